"""Is bf16 autocast a speed-up for training the PE model on this CPU?  (decides --precision auto on CPU)

    python benchmarks/bench_amp_cpu.py [--batch 64] [--iters 10] [--threads 2]

Times forward + backward + AdamW step of the mcunet model on random inputs in
fp32 and under ``torch.autocast("cpu", torch.bfloat16)``, median of ``iters``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext

import torch

from hil_af.model.loss import ordinal_ce
from hil_af.model.nets import build


def bench(dtype: torch.dtype | None, batch: int, iters: int, arch: str) -> float:
    torch.manual_seed(0)
    m = build(arch, 49)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    x = torch.randn(batch, 5, 64, 64)
    y = torch.randint(0, 49, (batch,))
    times = []
    for i in range(iters + 2):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype) if dtype else nullcontext():
            logits = m(x)
        loss = ordinal_ce(logits.float(), y, 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arch", default="mcunet")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    fp32 = bench(None, a.batch, a.iters, a.arch)
    bf16 = bench(torch.bfloat16, a.batch, a.iters, a.arch)
    print(json.dumps({"arch": a.arch, "batch": a.batch, "threads": a.threads, "fp32_samples_s": round(a.batch / fp32, 1),
                      "bf16_autocast_samples_s": round(a.batch / bf16, 1), "bf16_speedup": round(fp32 / bf16, 2)}))


if __name__ == "__main__":
    main()
