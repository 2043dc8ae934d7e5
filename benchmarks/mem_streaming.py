"""Peak memory of the streaming training data (hil_af.model.streaming) for 10 and 100 stacks.

    python benchmarks/mem_streaming.py [--stacks 10,100] [--slices 49] [--hw 256x384] [--window 2]

Writes N generated stacks (random uint16 views, a 3x4 grid of 64 px RoIs, 49
slices of 256 x 384 like the sim's) into a temp folder, then, each in a fresh
Python process, reads one whole epoch of (RoI, slice) batches through
``StreamingPairs`` and reports the process's peak RSS, and for contrast the
peak RSS of the in-memory ``load_patchset`` of the same stacks.
The streaming figure should not grow with N; the in-memory one grows ~N x
(views as float16: slices * 2 * H * W * 2 bytes a stack).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make(folder: Path, n_stacks: int, n: int, hw: tuple[int, int]) -> None:
    from hil_af.frames import grid_rois
    from hil_af.stacks import FocalStack, save_stack

    rng = np.random.default_rng(0)
    H, W = hw
    rois = grid_rois((H, W), 3, 4)
    for s in range(n_stacks):
        p = folder / f"g{s:04d}.npz"
        if p.exists():
            continue
        v = rng.integers(64, 1023, (2, n, H, W), dtype=np.uint16)
        st = FocalStack(v[0], v[1], np.arange(n, dtype=np.float64), rois, rng.integers(0, n, len(rois)).astype(np.int16),
                        (H, W), (0, 0), {"format": "focal-stack", "version": 1, "black_level": 64, "white_level": 1023,
                                         "lens_units": "vcm_code"})
        save_stack(p, st, compressed=False)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def child(mode: str, folder: str, window: int, batch: int) -> dict:
    import torch

    from hil_af.model.dataset import find_stacks, load_patchset
    from hil_af.model.encoding import EncodingConfig
    from hil_af.model.streaming import StackIndex, StreamingPairs, window_bytes

    torch.set_num_threads(1)
    base = peak_mb()
    t0 = time.perf_counter()
    enc = EncodingConfig()
    if mode == "stream":
        index = StackIndex.build(folder)
        steps = index.samples // batch
        ds = StreamingPairs(index, enc, batch, steps, window=window, noise=0.1, jitter=8)
        nb = sum(1 for _ in ds)
        hw = np.load(index.paths[0])["left"].shape[1:]
        out = {"batches": nb, "peak_window_mb": ds.peak_window_bytes / 2**20,
               "bound_mb": window_bytes(index.n, hw, window) / 2**20}
    else:
        ps = load_patchset(find_stacks(folder), enc)
        out = {"views_mb": sum(v.nbytes for v in ps.views) / 2**20}
    out.update(mode=mode, import_peak_rss_mb=round(base, 1), peak_rss_mb=round(peak_mb(), 1),
               seconds=round(time.perf_counter() - t0, 1))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stacks", default="10,100")
    ap.add_argument("--slices", type=int, default=49)
    ap.add_argument("--hw", default="256x384")
    ap.add_argument("--window", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--in-memory", action="store_true", help="also measure load_patchset (holds every stack)")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child[0], a.child[1], a.window, a.batch)))
        return 0
    H, W = (int(v) for v in a.hw.split("x"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_stacks in (int(v) for v in a.stacks.split(",")):
            folder = Path(tmp) / f"n{n_stacks}"
            folder.mkdir()
            make(folder, n_stacks, a.slices, (H, W))
            for mode in ("stream", "memory") if a.in_memory else ("stream",):
                r = subprocess.run([sys.executable, __file__, "--child", mode, str(folder), "--window", str(a.window),
                                    "--batch", str(a.batch)], capture_output=True, text=True, check=True)
                rows.append({"stacks": n_stacks, **json.loads(r.stdout.strip().splitlines()[-1])})
                print(json.dumps(rows[-1]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
