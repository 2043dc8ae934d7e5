"""Focal stacks -> training patches for the PE model (numpy; batches are handed to torch by train.py).

For every stack (the focal-stack format of docs/formats.md, read with hil_af.stacks.load_stack),
every RoI with a known ground truth and every slice k, the sample is the
five-channel encoding (hil_af.model.encoding) of the RoI at slice k, with
lens-PE k/(n-1), labelled with the RoI's gt slice.  The normalised views are
computed per batch from the stacks' whole views kept in memory as float16
(so training can shift a patch a few pixels: position jitter, with the
RoI-PE shifted along); without augmentation a batch is exactly the
inference encoding (tested).

A sample is a pair (roi row r, slice k): step 1 uses every (r, k); step 2
uses (r, p1(r, k)) for every start slice k, where p1 is the step-1 model's
prediction from slice k (see ``step2_pairs``).  The validation split holds
out whole stacks (seeded).

Any sweep length: stacks may have different slice counts n_s.  The model
has ``n`` output bins over the lens range (bin j is the fraction j/(n-1) of
the swept range), the lens-PE of slice k is k/(n_s - 1) (the fraction of the
range, see hil_af.model.encoding), and a label is the RoI's gt slice as a
fraction of the range in model bins, ``gt * (n - 1) / (n_s - 1)`` (float; an
integer when n_s = n).  ``to_stack_slice`` maps a model bin back to a slice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import BadInput
from ..stacks import stack_files
from .encoding import N_CHANNELS, EncodingConfig, _fit_axis, fit_patch, model_windows, normalise_views
from .inference import decoded_bins


def find_stacks(stacks_dir: str | Path) -> list[Path]:
    """All ``*.npz`` stacks under ``stacks_dir`` (recursive, sorted); BadInput when none."""
    return stack_files(stacks_dir, recursive=True)


@dataclass
class PatchSet:
    """The views of a set of stacks plus a table of their RoIs with gt.

    views: per stack, float16 [n_s, 2, H, W] black-subtracted left/right of every slice;
    per RoI row (R rows): ``sid`` stack index, ``crop`` (x, y) of the S x S patch the
    inference encoding takes (view px; valid where ``croppable``), ``fitted_idx`` row in
    ``fitted`` (float16 [F, n, 2, S, S]: resampled patches of RoIs that are not plain
    crops; -1 for croppable RoIs), ``pe_affine`` (ax, bx, ay, by): patch column c (row r)
    lies at full-plane x = ax + bx * (c + 0.5) (y = ay + by * (r + 0.5)) before any
    jitter, ``sensor_hw`` and ``gt``.  ``stack_id`` = ``sid`` (kept for the split).
    """

    views: list[np.ndarray]
    sid: np.ndarray
    crop: np.ndarray
    croppable: np.ndarray
    fitted_idx: np.ndarray
    fitted: np.ndarray
    pe_affine: np.ndarray
    sensor_hw: np.ndarray
    gt: np.ndarray
    n: int
    cfg: EncodingConfig
    stacks: list[str] = field(default_factory=list)
    stack_meta: list[dict] = field(default_factory=list)
    n_of: np.ndarray | None = None  # int64 [R]: slices of the RoI's stack (None: all have n)

    def __post_init__(self) -> None:
        if self.n_of is None:
            self.n_of = np.full(len(self.gt), self.n, dtype=np.int64)

    @property
    def n_rows(self) -> np.ndarray:
        assert self.n_of is not None
        return self.n_of

    def label(self, rows: np.ndarray) -> np.ndarray:
        """Labels float32 [B] of RoI rows: gt as a fraction of the range, in model bins."""
        rows = np.asarray(rows, dtype=np.int64)
        return (self.gt[rows] * (self.n - 1) / (self.n_rows[rows] - 1)).astype(np.float32)

    def to_stack_slice(self, rows: np.ndarray, bins: np.ndarray) -> np.ndarray:
        """Model bins -> the nearest slice of each row's stack (int64)."""
        rows = np.asarray(rows, dtype=np.int64)
        n_s = self.n_rows[rows]
        return np.clip(np.rint(np.asarray(bins, dtype=np.float64) * (n_s - 1) / (self.n - 1)), 0, n_s - 1).astype(np.int64)

    @property
    def stack_id(self) -> np.ndarray:
        return self.sid

    @property
    def n_rois(self) -> int:
        return int(self.gt.shape[0])

    def subset(self, rows: np.ndarray) -> "PatchSet":
        rows = np.asarray(rows, dtype=np.int64)
        return PatchSet(self.views, self.sid[rows], self.crop[rows], self.croppable[rows], self.fitted_idx[rows],
                        self.fitted, self.pe_affine[rows], self.sensor_hw[rows], self.gt[rows], self.n, self.cfg,
                        self.stacks, self.stack_meta, self.n_rows[rows])

    def all_pairs(self) -> np.ndarray:
        """Every (roi row, slice of its stack) pair, int64 [sum n_s, 2] (the step-1 samples)."""
        n_s = self.n_rows
        r = np.repeat(np.arange(self.n_rois), n_s)
        start = np.repeat(np.cumsum(n_s) - n_s, n_s)
        k = np.arange(int(n_s.sum())) - start
        return np.stack([r, k], axis=1).astype(np.int64)

    def batch(self, pairs: np.ndarray, rng: np.random.Generator | None = None, noise: float = 0.0,
              jitter: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Encoded inputs float32 [B, 5, S, S] and labels float32 [B] (``label``) of ``pairs`` [B, 2].

        Without ``rng`` this is exactly the inference encoding of the RoI.  With ``rng``
        (augmentation): a croppable patch is shifted by up to ``jitter`` px in x and y
        (kept inside the view; the RoI-PE follows the shift), then Gaussian noise of std
        U(0, noise) is added to both normalised views (the per-view mean normalisation
        already removes brightness gains, so no gain jitter is needed)."""
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        r, k = pairs[:, 0], pairs[:, 1]
        B, S = len(pairs), self.cfg.size
        shift = np.zeros((B, 2), dtype=np.int64)
        crops = np.empty((B, 2, S, S), dtype=np.float32)
        d = rng.integers(-jitter, jitter + 1, size=(B, 2)) if (rng is not None and jitter > 0) else None
        for b in range(B):
            rb = r[b]
            if self.croppable[rb]:
                v = self.views[self.sid[rb]]
                x, y = self.crop[rb]
                if d is not None:
                    x2 = int(np.clip(x + d[b, 0], 0, v.shape[3] - S))
                    y2 = int(np.clip(y + d[b, 1], 0, v.shape[2] - S))
                    shift[b] = (x2 - x, y2 - y)
                    x, y = x2, y2
                crops[b] = v[k[b], :, y : y + S, x : x + S]
            else:
                crops[b] = self.fitted[self.fitted_idx[rb], k[b]]
        x = np.empty((B, N_CHANNELS, S, S), dtype=np.float32)
        x[:, 0], x[:, 1] = normalise_views(crops[:, 0], crops[:, 1], self.cfg.eps)
        if rng is not None and noise > 0:
            sd = rng.uniform(0.0, noise, size=(B, 1, 1, 1)).astype(np.float32)
            x[:, 0:2] += sd * rng.standard_normal((B, 2, S, S), dtype=np.float32)
        if self.cfg.roi_pe:
            c = np.arange(S, dtype=np.float64)[None, :] + 0.5
            ax, bx, ay, by = (self.pe_affine[r, i][:, None] for i in range(4))
            px = 2.0 * (ax + shift[:, 0:1] + bx * c) / self.sensor_hw[r, 1:2] - 1.0
            py = 2.0 * (ay + shift[:, 1:2] + by * c) / self.sensor_hw[r, 0:1] - 1.0
            x[:, 2] = px[:, None, :].astype(np.float32)
            x[:, 3] = py[:, :, None].astype(np.float32)
        else:
            x[:, 2:4] = 0.0
        x[:, 4] = (k / (self.n_rows[r] - 1))[:, None, None] if self.cfg.lens_pe else 0.0
        return x, self.label(r)


def load_patchset(paths: Iterable[str | Path], cfg: EncodingConfig,
                  progress: Callable[[Iterable], Iterable] | None = None, flatfield=None,
                  n_bins: int | None = None) -> PatchSet:
    """Read focal stacks: keep their views (float16) and tabulate every RoI with gt >= 0.

    n_bins: the model's output bins (default: the largest slice count of the stacks);
    stacks of any slice count >= 2 mix (module doc).

    flatfield: a ``hil_af.calibration.flatfield.FlatField`` whose per-view gains
    multiply the views first (what inference does to each RoI with the same flat field)."""
    from ..stacks import load_stack

    paths = list(paths)
    S = cfg.size
    views: list[np.ndarray] = []
    fitted: list[np.ndarray] = []
    names: list[str] = []
    metas: list[dict] = []
    rows: dict[str, list] = {k: [] for k in ("sid", "crop", "ok", "fi", "aff", "shw", "gt", "n")}
    it = progress(paths) if progress else paths
    for p in it:
        st = load_stack(p)
        if st.n < 2:
            raise BadInput(f"stack {p} has {st.n} slice(s); a sweep needs at least 2")
        keep = np.flatnonzero(np.asarray(st.gt_index) >= 0)
        if len(keep) == 0:
            continue
        sid = len(views)
        names.append(str(p))
        metas.append({k: st.meta.get(k) for k in ("source", "scene", "rig") if k in st.meta})
        v = np.empty((st.n, 2, *st.view_hw), dtype=np.float16)
        black = np.float32(st.black_level)
        gl, gr = flatfield.gains(st.origin, st.view_hw) if flatfield is not None else (1.0, 1.0)
        v[:, 0] = (st.left.astype(np.float32) - black) * gl
        v[:, 1] = (st.right.astype(np.float32) - black) * gr
        views.append(v)
        y0, x0 = st.origin
        wins = model_windows(st.rois, S, st.view_hw, cfg.fit)  # what inference reads for each RoI
        for ri in keep:
            x, y, w, h = (int(t) for t in wins[ri])
            *_, xc = _fit_axis(x, w, S, cfg.fit)  # output pixel centres, view px
            *_, yc = _fit_axis(y, h, S, cfg.fit)
            bx, by = float(xc[1] - xc[0]), float(yc[1] - yc[0])
            ok = bx == 1.0 and by == 1.0  # a plain S x S crop of the view
            rows["sid"].append(sid)
            rows["crop"].append((int(xc[0] - 0.5), int(yc[0] - 0.5)))
            rows["ok"].append(ok)
            rows["aff"].append((x0 + xc[0] - 0.5 * bx, bx, y0 + yc[0] - 0.5 * by, by))
            if ok:
                rows["fi"].append(-1)
            else:
                rows["fi"].append(len(fitted))
                fp = np.empty((st.n, 2, S, S), dtype=np.float16)
                for k in range(st.n):
                    fp[k, 0] = fit_patch(v[k, 0], (x, y, w, h), S, cfg.fit)
                    fp[k, 1] = fit_patch(v[k, 1], (x, y, w, h), S, cfg.fit)
                fitted.append(fp)
            rows["shw"].append(st.sensor_hw)
            rows["gt"].append(int(st.gt_index[ri]))
            rows["n"].append(int(st.n))
    if not views:
        raise BadInput("no RoI with a known ground truth (gt_index >= 0) in the given stacks")
    n_max = max(rows["n"])
    fit_arr = np.zeros((len(fitted), n_max, 2, S, S), dtype=np.float16)
    for i, fp in enumerate(fitted):
        fit_arr[i, : len(fp)] = fp
    n = int(n_bins) if n_bins is not None else n_max
    if n < 2:
        raise BadInput(f"the model needs at least 2 output bins, got {n}")
    return PatchSet(views, np.array(rows["sid"], dtype=np.int64), np.array(rows["crop"], dtype=np.int64),
                    np.array(rows["ok"], dtype=bool), np.array(rows["fi"], dtype=np.int64), fit_arr,
                    np.array(rows["aff"], dtype=np.float64), np.array(rows["shw"], dtype=np.int64),
                    np.array(rows["gt"], dtype=np.int64), n, cfg, names, metas, np.array(rows["n"], dtype=np.int64))


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


def fine_tune_split(ps: PatchSet, val_frac: float, seed: int) -> tuple[PatchSet, PatchSet | None, list[int]]:
    """The fine-tuning split: whole sweeps held out, at least 1 and at most a third of them (with 2
    sweeps or more), so early stopping sees sweeps it did not train on."""
    ids = np.unique(ps.stack_id)
    if len(ids) < 2:
        return ps, None, []
    frac = min(max(val_frac, 1.0 / len(ids)), 1.0 / 3.0 if len(ids) >= 3 else 0.5)
    return split_by_stack(ps, frac, seed)


def step2_pairs(ps: PatchSet, predict_fn: Callable[[np.ndarray], np.ndarray], batch: int = 512,
                pairs: np.ndarray | None = None) -> np.ndarray:
    """Step-2 samples: for every (roi r, start slice k) of ``pairs`` (default: all), (r, p1)
    where p1 = the slice of r's stack nearest the decoded bin (the rounded softmax mean, as the
    controller decodes: hil_af.model.inference.decode) of the step-1 model on the
    encoding of (r, k) (the slice the lens moves to).
    ``predict_fn(x [B,5,S,S]) -> logits [B, n]``."""
    pairs = ps.all_pairs() if pairs is None else np.asarray(pairs, dtype=np.int64)
    out = np.empty_like(pairs)
    for i in range(0, len(pairs), batch):
        sel = pairs[i : i + batch]
        x, _ = ps.batch(sel)
        pred = decoded_bins(np.asarray(predict_fn(x)))  # the controller's decode (inference.decode)
        out[i : i + batch, 0] = sel[:, 0]
        out[i : i + batch, 1] = ps.to_stack_slice(sel[:, 0], pred)  # where step 1 leaves the lens
    return out
