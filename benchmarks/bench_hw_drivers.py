"""Hardware-driver costs that can be measured without hardware.

Usage: python benchmarks/bench_hw_drivers.py [--moves 2000] [--json]

For each lens driver over its boundary fake: host CPU time per ``move_to``
(Python overhead of the driver + fake, median of 5 runs), and from the
recorded traffic the bytes on the wire per move and the bus time they take
(I2C at 100 / 400 kHz: 9 bit times per byte incl. ACK, plus one address byte
per message and ~2 bit times for start/stop; serial at 115200 baud 8N1:
10 bit times per byte, request + reply).  The mechanical settle of the VCM
(~10-15 ms) dwarfs all of these.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import time
from pathlib import Path

from hil_af.clock import SimClock
from hil_af.drivers.fakes import (
    Ak7375Model, Dw98xxModel, Dw9714Model, FakeI2CBus, FakeSerialPort, FakeV4L2Subdev, MicroPythonI2C,
)
from hil_af.drivers.i2c_vcm import I2CVcm
from hil_af.drivers.serial_bridge import SerialBridgeLens
from hil_af.drivers.v4l2_lens import V4L2Lens
from hil_af.drivers.vcm_chips import CHIPS

REPO = Path(__file__).resolve().parents[1]


def _firmware():
    spec = importlib.util.spec_from_file_location("bridge_protocol", REPO / "drivers/serial-bridge/bridge_protocol.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def i2c_bits(log_entries) -> int:
    bits = 0
    for e in log_entries:
        msgs = [e[2]] if e[0] == "w" else [e[2], e[3]]
        for m in msgs:
            bits += 2 + 9 * (1 + len(m))
    return bits


def time_moves(lens, n: int, lo: int, hi: int) -> float:
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for i in range(n):
            lens.move_to(lo + (i * 37) % (hi - lo))
        runs.append((time.perf_counter() - t0) / n)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    models = {"dw9807": Dw98xxModel, "dw9817": Dw98xxModel, "ak7375": Ak7375Model, "dw9714": Dw9714Model}
    for name, model in models.items():
        bus = FakeI2CBus({0x0C: model()})
        lens = I2CVcm(bus, 0x0C, CHIPS[name], clock=SimClock())
        lens.move_to(90)  # the first move after power-up is a ramp from the idle position: measure a later one
        n0 = len(bus.log)
        lens.move_to(100)
        bits = i2c_bits(bus.log[n0:])
        transfers = len(bus.log) - n0  # i2c_rdwr calls: STATUS poll (write+read) counts as one
        nbytes = sum(len(e[2]) + (len(e[3]) if e[0] == "wr" else 0) for e in bus.log[n0:])
        us = time_moves(lens, args.moves, 0, CHIPS[name].code_max) * 1e6
        rows.append({"driver": f"i2c {name}", "host_us_per_move": round(us, 1), "transfers_per_move": transfers,
                     "payload_bytes_per_move": nbytes,
                     "bus_ms_100khz": round(bits / 100e3 * 1e3, 3), "bus_ms_400khz": round(bits / 400e3 * 1e3, 3)})
        lens.close()
    dev = FakeV4L2Subdev()
    v = V4L2Lens(dev, clock=SimClock())
    rows.append({"driver": "v4l2 (fake ioctl)", "host_us_per_move": round(time_moves(v, args.moves, 0, 1023) * 1e6, 1),
                 "transfers_per_move": 1, "payload_bytes_per_move": 8})
    fw = _firmware()
    port = FakeSerialPort(fw.Bridge(MicroPythonI2C(FakeI2CBus({0x0C: Dw98xxModel()})), chip="dw9807").handle_line)
    s = SerialBridgeLens(port)
    s.move_to(512)
    req, rep = port.written[-1], port.replies[-1]
    us = time_moves(s, args.moves // 4, 0, 1023) * 1e6
    rows.append({"driver": "serial bridge (host + firmware logic in-process)", "host_us_per_move": round(us, 1),
                 "transfers_per_move": 2, "payload_bytes_per_move": len(req) + len(rep),
                 "line_ms_115200": round((len(req) + len(rep)) * 10 / 115200 * 1e3, 3)})
    out = {"python": platform.python_version(), "machine": platform.machine(), "moves": args.moves, "rows": rows}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"python {out['python']} on {out['machine']}")
    for r in rows:
        extra = ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("driver",))
        print(f"{r['driver']:<50} {extra}")


if __name__ == "__main__":
    main()
