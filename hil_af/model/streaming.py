"""Training samples streamed from focal stacks on disk, sharded by stack (torch ``IterableDataset``).

The in-memory trainer (``dataset.load_patchset``) keeps the views of EVERY stack;
on the Learning-to-Autofocus release (hundreds of GB) that does not fit.  Here:

* ``StackIndex`` reads only ``gt_index`` and ``lens_positions`` of each stack
  (an npz member is decompressed only when it is accessed, so the views are not
  read): a path and two integers per stack.
* Every epoch the stacks of the training split are dealt out to the ranks by
  ``torch.utils.data.DistributedSampler`` (shuffled with ``set_epoch``; each rank
  a disjoint shard, padded to equal size), and a rank's shard to its DataLoader
  workers (``get_worker_info``): stack i of the shard goes to worker i mod W.
* A worker reads ``window`` stacks at a time (``dataset.load_patchset``: the same
  float16 views and the same ``PatchSet.batch`` encoding / augmentation as the
  in-memory trainer), yields the shuffled (RoI, slice) samples of the window as
  whole batches (the last one topped up with random samples of the same window),
  then drops the window and reads the next one.
* Each rank yields exactly ``steps`` batches per epoch (DDP needs every rank to
  take the same number of optimizer steps): it stops early or goes round its
  shard again.

Memory of one worker, independent of the number of stacks:
``window * n_slices * 2 * H * W * 2`` bytes (float16 views of the window) plus
``n_slices * 2 * S * S * 2`` bytes per RoI that is not a plain crop (``fit=area``
or clipped RoIs) plus one encoded batch, ``batch * 5 * S * S * 4`` bytes, plus
the index (about 100 bytes a stack).  Sim stacks (49 slices, 256 x 384):
19 MB a stack; an L2AF stack with upsampled PD (49 x 2016 x 1512): 597 MB a stack.
Measured: benchmarks/mem_streaming.py.

Step 2 (the recipe's second model) streams too: each drawn sample (r, k) is
relabelled (r, p1), p1 the slice where the frozen step-1 model (a CPU fp32
copy inside the iterator) leaves the lens from slice k, before it is encoded.
Sweeps of any length mix as in dataset.py (model bins = the largest slice count).

Determinism: the order and augmentation of batch b of window w of epoch e on
rank r / worker u come from ``default_rng([seed, e, r, u, lap, w, b])``, so a run
resumed at step s skips to it without reading the windows before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DistributedSampler, IterableDataset, get_worker_info

from ..errors import BadInput, FormatError
from .dataset import PatchSet, find_stacks, load_patchset
from .encoding import EncodingConfig


@dataclass
class StackIndex:
    """Per stack with at least one gt RoI: its path, number of such RoIs and of slices; ``n`` is the
    model's output bins (the largest slice count: sweeps of any length mix, see dataset.py)."""

    paths: list[str]
    rois: np.ndarray  # int64 [N]
    ns: np.ndarray  # int64 [N] slices of each stack
    bins: int | None = None  # model output bins when fixed (fine-tuning: the init model's); else max(ns)

    @property
    def n(self) -> int:
        return int(self.bins) if self.bins is not None else int(self.ns.max())

    @classmethod
    def build(cls, stacks_dir: str | Path) -> "StackIndex":
        paths, rois, ns = [], [], []
        for p in find_stacks(stacks_dir):
            try:
                with np.load(p, allow_pickle=False) as z:
                    gt = np.asarray(z["gt_index"])
                    n = int(np.asarray(z["lens_positions"]).shape[0])
            except Exception as e:  # unreadable zip, missing key, pickled member ...
                raise FormatError(f"{p}: not a readable focal stack ({type(e).__name__}: {e})") from None
            if n < 2:
                raise BadInput(f"stack {p} has {n} slice(s); a sweep needs at least 2")
            k = int((gt >= 0).sum())
            if k:
                paths.append(str(p))
                rois.append(k)
                ns.append(n)
        if not paths:
            raise BadInput("no RoI with a known ground truth (gt_index >= 0) in the given stacks")
        return cls(paths, np.asarray(rois, dtype=np.int64), np.asarray(ns, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, ids: np.ndarray | list[int]) -> "StackIndex":
        ids = [int(i) for i in ids]
        return StackIndex([self.paths[i] for i in ids], self.rois[ids], self.ns[ids], self.n)

    @property
    def samples(self) -> int:
        return int((self.rois * self.ns).sum())

    def split(self, val_frac: float, seed: int) -> tuple["StackIndex", "StackIndex | None", list[int]]:
        """Whole stacks held out, the same rule as ``dataset.split_by_stack``."""
        if not 0.0 <= val_frac < 1.0:
            raise BadInput(f"--val-frac must be in [0, 1), got {val_frac}")
        ids = np.arange(len(self))
        n_val = int(round(val_frac * len(ids)))
        if val_frac > 0 and len(ids) >= 2:
            n_val = max(1, n_val)
        n_val = min(n_val, len(ids) - 1)
        if n_val <= 0:
            return self, None, []
        val_ids = np.sort(np.random.default_rng(seed).choice(ids, size=n_val, replace=False))
        tr_ids = np.setdiff1d(ids, val_ids)
        return self.subset(tr_ids), self.subset(val_ids), [int(i) for i in val_ids]


def rank_shard(n_stacks: int, rank: int, world: int, epoch: int, seed: int, shuffle: bool = True) -> list[int]:
    """Stack ids of ``rank`` for ``epoch``: torch's DistributedSampler over the stacks."""
    s: DistributedSampler = DistributedSampler(range(n_stacks), num_replicas=world, rank=rank,  # type: ignore[arg-type]
                                               shuffle=shuffle, seed=seed, drop_last=False)
    s.set_epoch(epoch)
    return list(s)


def window_bytes(n: int, hw: tuple[int, int], window: int) -> int:
    """The documented bound on the views a worker holds: window * n * 2 * H * W * 2 bytes."""
    return int(window) * int(n) * 2 * int(hw[0]) * int(hw[1]) * 2


class StreamingPairs(IterableDataset):
    """Batches (x float32 [B, 5, S, S], y int64 [B]) of one rank for one epoch; see the module doc.

    ``relabel``: (arch, state_dict) of the frozen step-1 model for step-2 samples, or None."""

    def __init__(self, index: StackIndex, enc: EncodingConfig, batch: int, steps: int, *, rank: int = 0,
                 world: int = 1, epoch: int = 0, seed: int = 0, window: int = 2, skip: int = 0, noise: float = 0.0,
                 jitter: int = 0, flatfield: Any = None, relabel: tuple[str, dict] | None = None) -> None:
        super().__init__()
        if window < 1 or batch < 1:
            raise BadInput(f"window and batch must be >= 1, got {window} and {batch}")
        self.index, self.enc, self.batch, self.steps = index, enc, int(batch), int(steps)
        self.rank, self.world, self.epoch, self.seed, self.window = rank, world, epoch, seed, int(window)
        self.skip, self.noise, self.jitter, self.flatfield, self.relabel = int(skip), noise, jitter, flatfield, relabel
        self.peak_window_bytes = 0  # largest view memory held (in this process), for the benchmark

    def __len__(self) -> int:
        return max(0, self.steps - self.skip)

    def _worker(self) -> tuple[int, int]:
        info = get_worker_info()
        return (0, 1) if info is None else (info.id, info.num_workers)

    def _relabel_model(self) -> torch.nn.Module | None:
        if self.relabel is None:
            return None
        from .nets import build

        arch, state = self.relabel
        m = build(arch, self.index.n)
        m.load_state_dict(state)
        return m.float().eval()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        wid, nw = self._worker()
        # the DataLoader takes batches from its workers round-robin: global batch i comes from worker i % nw
        my_steps = self.steps // nw + (1 if wid < self.steps % nw else 0)
        skip = (self.skip - wid + nw - 1) // nw if self.skip > wid else 0
        if my_steps - skip <= 0:
            return
        m1 = self._relabel_model()
        emitted = skip
        B = self.batch
        for lap in range(1 << 30):
            shard = rank_shard(len(self.index), self.rank, self.world, self.epoch * 7919 + lap, self.seed)
            mine = shard[wid::nw] or shard
            for wi in range(0, len(mine), self.window):
                chunk = mine[wi:wi + self.window]
                nb = math.ceil(int((self.index.rois[chunk] * self.index.ns[chunk]).sum()) / B)
                if skip >= nb:  # resuming: this window's batches were trained on before the checkpoint
                    skip -= nb
                    continue
                ps = load_patchset([self.index.paths[i] for i in chunk], self.enc, flatfield=self.flatfield,
                                   n_bins=self.index.n)
                self.peak_window_bytes = max(self.peak_window_bytes, sum(v.nbytes for v in ps.views) + ps.fitted.nbytes)
                pairs = ps.all_pairs()
                rng = np.random.default_rng([self.seed, self.epoch, self.rank, wid, lap, wi])
                order = rng.permutation(len(pairs))
                if nb * B > len(order):
                    order = np.concatenate([order, rng.choice(len(pairs), nb * B - len(order))])
                for b in range(skip, nb):
                    sel = pairs[order[b * B:(b + 1) * B]].copy()
                    rb = np.random.default_rng([self.seed, self.epoch, self.rank, wid, lap, wi, b])
                    if m1 is not None:
                        with torch.no_grad():
                            bins = m1(torch.from_numpy(ps.batch(sel)[0])).argmax(1).numpy()
                        sel[:, 1] = ps.to_stack_slice(sel[:, 0], bins)  # where step 1 leaves the lens
                    x, y = ps.batch(sel, rb, self.noise, self.jitter)
                    yield torch.from_numpy(x), torch.from_numpy(y)
                    emitted += 1
                    if emitted >= my_steps:
                        return
                skip = 0
                del ps


def iter_windows(index: StackIndex, enc: EncodingConfig, window: int, ids: list[int] | None = None,
                 flatfield: Any = None) -> Iterator[PatchSet]:
    """PatchSets of ``window`` stacks at a time (validation), in index order."""
    ids = list(range(len(index))) if ids is None else ids
    for i in range(0, len(ids), window):
        yield load_patchset([index.paths[j] for j in ids[i:i + window]], enc, flatfield=flatfield, n_bins=index.n)
