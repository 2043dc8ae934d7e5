"""Training throughput (samples/s) of ``hil-af train`` with 1 process and under torchrun with N processes.

    python benchmarks/bench_ddp_throughput.py --stacks DIR [--procs 1,2] [--epochs 2] [--batch 32] [--threads 1]

Runs the streaming engine on the stacks in DIR (default: 6 sim stacks of 9 slices
generated into a temp folder), each process with ``--threads`` torch threads, and prints
the samples/s of each step-1 epoch from card.json (``distributed.samples_per_s`` is the
last epoch's) plus the machine's load average, since on a shared machine the figure
depends on it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stacks", default=None)
    ap.add_argument("--procs", default="1,2")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(a.threads)}
    with tempfile.TemporaryDirectory() as tmp:
        stacks = a.stacks
        if stacks is None:
            from hil_af.model.simdata import make_stack

            stacks = str(Path(tmp) / "stacks")
            Path(stacks).mkdir()
            for s in range(6):
                make_stack(Path(stacks) / f"s{s}.npz", "sim-default", seed=s, n_slices=9, grid=(3, 4))
        hil_af = str(Path(sys.executable).parent / "hil-af")
        for n in (int(v) for v in a.procs.split(",")):
            out = Path(tmp) / f"m{n}"
            args = ["train", "--stacks", stacks, "--out", str(out), "--epochs", str(a.epochs), "--epochs2", "1",
                    "--batch", str(a.batch), "--threads", str(a.threads), "--val-frac", "0.34", "--device", "cpu"]
            if n == 1:
                cmd = [sys.executable, "-m", "hil_af.cli", *args, "--stream"]
            else:
                cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
                       "--no-python", hil_af, *args]
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            card = json.loads((out / "card.json").read_text())
            hist = [h["samples_per_s"] for h in card["val"]["history"] if h["step"] == "step1"]
            print(json.dumps({"processes": n, "threads_each": a.threads, "global_batch": a.batch,
                              "step1_samples_per_s_by_epoch": hist, "load_avg": os.getloadavg()[0]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
