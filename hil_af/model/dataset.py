"""Focal stacks -> training patches for the PE model (numpy; batches are handed to torch by train.py).

For every stack (shared/focal-stack-format.md, read with hil_af.stacks.load_stack),
every RoI with a known ground truth and every slice k, the sample is the
five-channel encoding (hil_af.model.encoding) of the RoI at slice k, with
lens-PE k/(n-1), labelled with the RoI's gt slice.  The normalised views are
computed once at load time and kept as float16 [R, n, S, S] (R = RoIs with
gt over all stacks); the PE planes are added per batch, with the same
functions inference uses.

A sample is a pair (roi row r, slice k): step 1 uses every (r, k); step 2
uses (r, p1(r, k)) for every start slice k, where p1 is the step-1 model's
prediction from slice k (see ``step2_pairs``).  The validation split holds
out whole stacks (seeded).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import BadInput
from .encoding import N_CHANNELS, EncodingConfig, extract_patches, normalise_views, pe_planes


def find_stacks(stacks_dir: str | Path) -> list[Path]:
    """All ``*.npz`` files under ``stacks_dir`` (recursive, sorted); BadInput when none."""
    d = Path(stacks_dir)
    if not d.is_dir():
        raise BadInput(f"--stacks {d} is not a directory")
    paths = sorted(p for p in d.rglob("*.npz") if p.is_file())
    if not paths:
        raise BadInput(f"no focal stacks (*.npz) under {d}")
    return paths


@dataclass
class PatchSet:
    """Normalised view patches of the RoIs with gt of a set of stacks.

    views: float16 [R, n, 2, S, S] (left, right normalised per encoding.normalise_views);
    rois_full: int64 [R, 4] RoI on the full plane; sensor_hw: int64 [R, 2];
    gt: int64 [R]; stack_id: int64 [R] (index into ``stacks``); n: slices per stack.
    """

    views: np.ndarray
    rois_full: np.ndarray
    sensor_hw: np.ndarray
    gt: np.ndarray
    stack_id: np.ndarray
    n: int
    cfg: EncodingConfig
    stacks: list[str] = field(default_factory=list)
    stack_meta: list[dict] = field(default_factory=list)
    _pe: np.ndarray | None = None

    @property
    def n_rois(self) -> int:
        return int(self.gt.shape[0])

    def pe(self) -> np.ndarray:
        """RoI-PE planes float32 [R, 2, S, S] (zeros when cfg.roi_pe is False)."""
        if self._pe is None:
            S = self.cfg.size
            pe = np.zeros((self.n_rois, 2, S, S), dtype=np.float32)
            if self.cfg.roi_pe:
                for r in range(self.n_rois):
                    pe[r, 0], pe[r, 1] = pe_planes(self.rois_full[r], tuple(self.sensor_hw[r]), S, self.cfg.fit)
            self._pe = pe
        return self._pe

    def subset(self, rows: np.ndarray) -> "PatchSet":
        rows = np.asarray(rows, dtype=np.int64)
        return PatchSet(self.views[rows], self.rois_full[rows], self.sensor_hw[rows], self.gt[rows],
                        self.stack_id[rows], self.n, self.cfg, self.stacks, self.stack_meta)

    def all_pairs(self) -> np.ndarray:
        """Every (roi row, slice) pair, int64 [R * n, 2] (the step-1 samples)."""
        r, k = np.meshgrid(np.arange(self.n_rois), np.arange(self.n), indexing="ij")
        return np.stack([r.ravel(), k.ravel()], axis=1)

    def batch(self, pairs: np.ndarray, rng: np.random.Generator | None = None,
              noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Encoded inputs float32 [B, 5, S, S] and labels int64 [B] of ``pairs`` [B, 2].

        With ``rng`` and ``noise`` > 0 (augmentation): each sample gets Gaussian noise
        of std U(0, noise) added to both normalised views, and both views are scaled by
        one common factor U(0.8, 1.25) (contrast jitter; the per-view mean normalisation
        already removes brightness gains)."""
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        r, k = pairs[:, 0], pairs[:, 1]
        B, S = len(pairs), self.cfg.size
        x = np.empty((B, N_CHANNELS, S, S), dtype=np.float32)
        x[:, 0:2] = self.views[r, k]
        if rng is not None and noise > 0:
            scale = rng.uniform(0.8, 1.25, size=(B, 1, 1, 1)).astype(np.float32)
            sd = rng.uniform(0.0, noise, size=(B, 1, 1, 1)).astype(np.float32)
            x[:, 0:2] = x[:, 0:2] * scale + sd * rng.standard_normal((B, 2, S, S), dtype=np.float32)
        x[:, 2:4] = self.pe()[r]
        x[:, 4] = (k / (self.n - 1))[:, None, None] if self.cfg.lens_pe else 0.0
        return x, self.gt[r].copy()


def load_patchset(paths: Iterable[str | Path], cfg: EncodingConfig,
                  progress: Callable[[Iterable], Iterable] | None = None) -> PatchSet:
    """Read focal stacks and extract the normalised patches of every RoI with gt >= 0."""
    from ..stacks import load_stack

    paths = list(paths)
    views, rois_full, shw, gts, sids, names, metas = [], [], [], [], [], [], []
    n_ref: int | None = None
    it = progress(paths) if progress else paths
    for sid, p in enumerate(it):
        st = load_stack(p)
        if n_ref is None:
            n_ref = st.n
        elif st.n != n_ref:
            raise BadInput(f"stack {p} has {st.n} slices, earlier stacks have {n_ref}; one model needs one n")
        names.append(str(p))
        metas.append({k: st.meta.get(k) for k in ("source", "scene", "rig") if k in st.meta})
        keep = np.flatnonzero(np.asarray(st.gt_index) >= 0)
        if len(keep) == 0:
            continue
        rois = np.asarray(st.rois, dtype=np.int64)[keep]
        S = cfg.size
        v = np.empty((len(keep), st.n, 2, S, S), dtype=np.float16)
        for k in range(st.n):
            f = st.frame(k)
            pl, pr = extract_patches(f.left, f.right, rois, cfg)
            nl, nr = normalise_views(pl, pr, cfg.eps)
            v[:, k, 0], v[:, k, 1] = nl, nr
        views.append(v)
        full = rois.copy()
        full[:, 0] += st.origin[1]
        full[:, 1] += st.origin[0]
        rois_full.append(full)
        shw.append(np.tile(np.array(st.sensor_hw, dtype=np.int64), (len(keep), 1)))
        gts.append(np.asarray(st.gt_index, dtype=np.int64)[keep])
        sids.append(np.full(len(keep), sid, dtype=np.int64))
    if not views:
        raise BadInput("no RoI with a known ground truth (gt_index >= 0) in the given stacks")
    assert n_ref is not None
    return PatchSet(np.concatenate(views), np.concatenate(rois_full), np.concatenate(shw), np.concatenate(gts),
                    np.concatenate(sids), n_ref, cfg, names, metas)


def split_by_stack(ps: PatchSet, val_frac: float, seed: int) -> tuple[PatchSet, PatchSet | None, list[int]]:
    """Hold out ``round(val_frac * stacks)`` whole stacks (at least 1 when val_frac > 0 and
    there are >= 2 stacks); returns (train, val or None, held-out stack ids)."""
    if not 0.0 <= val_frac < 1.0:
        raise BadInput(f"--val-frac must be in [0, 1), got {val_frac}")
    ids = np.unique(ps.stack_id)
    n_val = int(round(val_frac * len(ids)))
    if val_frac > 0 and len(ids) >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, len(ids) - 1)
    if n_val <= 0:
        return ps, None, []
    rng = np.random.default_rng(seed)
    val_ids = np.sort(rng.choice(ids, size=n_val, replace=False))
    is_val = np.isin(ps.stack_id, val_ids)
    return ps.subset(np.flatnonzero(~is_val)), ps.subset(np.flatnonzero(is_val)), [int(i) for i in val_ids]


def step2_pairs(ps: PatchSet, predict_fn: Callable[[np.ndarray], np.ndarray], batch: int = 512) -> np.ndarray:
    """Step-2 samples: for every (roi r, start slice k), (r, p1) where p1 = argmax of the
    step-1 model on the encoding of (r, k).  ``predict_fn(x [B,5,S,S]) -> logits [B, n]``."""
    pairs = ps.all_pairs()
    out = np.empty_like(pairs)
    for i in range(0, len(pairs), batch):
        x, _ = ps.batch(pairs[i : i + batch])
        pred = np.asarray(predict_fn(x)).argmax(axis=1)
        out[i : i + batch, 0] = pairs[i : i + batch, 0]
        out[i : i + batch, 1] = pred
    return out
