"""Raw decode throughput: ms per frame and input MB/s for each packing and layout.

Usage: python benchmarks/bench_decode.py [--width 4608] [--height 2592] [--repeat 5] [--json]

Default frame: 4608 x 2592 (11.9 MP, the IMX708 full sensor), CSI-2 rows padded
to a 32-byte stride as the Pi's unicam does.  Times are the median of
``--repeat`` runs of ``unpack`` (bytes -> uint16 image) and of ``decode_raw``
(bytes -> float32 black-subtracted L/R DualPixelFrame).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np

from hil_af.rawdecode import decode_raw, pack_raw10, pack_raw12, unpack


def _median_s(fn, repeat: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=4608)
    ap.add_argument("--height", type=int, default=2592)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    W, H = a.width, a.height
    rng = np.random.default_rng(0)
    rows = []
    for fmt in ("RAW10", "RAW12", "U16"):
        top = {"RAW10": 1023, "RAW12": 4095, "U16": 65535}[fmt]
        img = rng.integers(0, top + 1, (H, W), dtype=np.uint16)
        if fmt == "RAW10":
            stride = -(-(-(-W // 4) * 5) // 32) * 32
            buf, stride_arg = pack_raw10(img, stride), stride
        elif fmt == "RAW12":
            stride = -(-(-(-W // 2) * 3) // 32) * 32
            buf, stride_arg = pack_raw12(img, stride), stride
        else:
            buf, stride_arg = img.copy(), None
        nbytes = buf.nbytes
        t_unpack = _median_s(lambda: unpack(buf, W, H, fmt, stride_arg), a.repeat)
        for layout in ("columns", "halves", "rows"):
            t_decode = _median_s(lambda: decode_raw(buf, W, H, fmt=fmt, stride=stride_arg, layout=layout, black_level=16),
                                 a.repeat)
            rows.append({"fmt": fmt, "layout": layout, "bytes": nbytes, "unpack_ms": round(1e3 * t_unpack, 1),
                         "decode_ms": round(1e3 * t_decode, 1), "decode_MB_s": round(nbytes / t_decode / 1e6, 1),
                         "decode_Mpx_s": round(W * H / t_decode / 1e6, 1)})
    info = {"width": W, "height": H, "megapixels": round(W * H / 1e6, 2), "numpy": np.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "results": rows}
    if a.json:
        print(json.dumps(info, indent=2))
        return
    print(f"{W} x {H} ({info['megapixels']} MP), numpy {np.__version__}, {platform.machine()}, median of {a.repeat}")
    print(f"{'fmt':6} {'layout':8} {'MB in':>7} {'unpack ms':>10} {'decode ms':>10} {'MB/s':>7} {'Mpx/s':>7}")
    for r in rows:
        print(f"{r['fmt']:6} {r['layout']:8} {r['bytes'] / 1e6:7.1f} {r['unpack_ms']:10.1f} {r['decode_ms']:10.1f} "
              f"{r['decode_MB_s']:7.1f} {r['decode_Mpx_s']:7.1f}")


if __name__ == "__main__":
    main()
