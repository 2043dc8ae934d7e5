"""onnxruntime time of the step-1 PE model per RoI batch (1, 12, 64 RoIs), one thread.

Usage: python benchmarks/bench_inference.py [--model MODEL_DIR] [--threads 1] [--repeats 50]
Prints a table: batch, ms per call (median), ms per RoI, and the same for the
whole ``PEPredictor.predict`` (encoding included) on a 256 x 384 frame.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from hil_af.frames import DualPixelFrame
from hil_af.model.inference import PEPredictor


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=50)
    a = ap.parse_args()
    p = PEPredictor(a.model, step=1, threads=a.threads)
    S, n = p.encoding.size, p.n_slices
    rng = np.random.default_rng(0)
    base = rng.uniform(20, 600, (256, 384)).astype(np.float32)
    frame = DualPixelFrame(left=base, right=np.roll(base, 1, axis=1))
    print(f"model {p.path} ({p.card.get('arch')}, {p.card.get('flops', 0) / 1e6:.1f} MFLOPs/patch), threads {a.threads}")
    print("| RoIs | onnxruntime ms/call | ms/RoI | predict() incl. encoding ms/call |")
    print("|---|---|---|---|")
    for b in (1, 12, 64):
        x = rng.standard_normal((b, 5, S, S)).astype(np.float32)
        t_run = _median_ms(lambda: p.run(x), a.repeats)
        xs = rng.integers(0, 384 - S, b)
        ys = rng.integers(0, 256 - S, b)
        rois = np.stack([xs, ys, np.full(b, S), np.full(b, S)], axis=1).astype(np.int32)
        t_pred = _median_ms(lambda: p.predict(frame, rois, n // 2, n), a.repeats)
        print(f"| {b} | {t_run:.2f} | {t_run / b:.3f} | {t_pred:.2f} |")


if __name__ == "__main__":
    main()
