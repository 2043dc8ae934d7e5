#!/usr/bin/env python3
"""Python-heap growth of the daemon's AF service over many focus requests (tracemalloc).

RSS (benchmarks/soak_daemon.py) moves in steps of a few MiB as the allocator
grabs and returns arenas; this measures what Python objects stay alive:
the service handles ``--warmup`` focus requests, then two blocks of ``--n``
(random 64x64 RoIs, sim with faults, virtual clock), and reports the heap
growth of each block and the lines that grew most in the second.

    python benchmarks/heap_daemon_service.py [--n 100] [--warmup 40]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import tracemalloc

from hil_af.clock import SimClock
from hil_af.controller.core import Controller
from hil_af.daemon.protocol import Request
from hil_af.daemon.service import AFService, ServiceConfig
from hil_af.drivers.registry import open_rig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rig", default="sim://?seed=7&fault_frame=timeout&fault_p=0.1&fault_stall=0.005")
    ap.add_argument("--method", default="cdaf")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=40)
    a = ap.parse_args()
    rig = open_rig(a.rig, clock=SimClock())
    svc = AFService(ServiceConfig(rig=a.rig, method=a.method))
    svc.rig, svc.controller = rig, Controller(rig, method=a.method)
    svc.open()
    rng = random.Random(1)

    def run(n: int) -> None:
        for i in range(n):
            svc.handle(Request("focus", roi=(rng.randrange(0, 321, 8), rng.randrange(0, 193, 8), 64, 64)))
            if i % 10 == 0:
                svc.handle(Request("status"))

    run(a.warmup)
    tracemalloc.start(10)
    snaps = []
    for _ in range(3):
        if snaps:
            run(a.n)
        gc.collect()
        snaps.append(tracemalloc.take_snapshot())
    blocks = [sum(d.size_diff for d in b.compare_to(s, "lineno")) / 1024 for s, b in zip(snaps, snaps[1:])]
    top = [str(d) for d in snaps[2].compare_to(snaps[1], "lineno")[:5]]
    print(json.dumps({"rig": a.rig, "method": a.method, "requests_per_block": a.n, "counts": svc.counts,
                      "heap_growth_kib_per_block": [round(b, 1) for b in blocks], "top_growth_second_block": top}, indent=2))
    svc.close()


if __name__ == "__main__":
    main()
