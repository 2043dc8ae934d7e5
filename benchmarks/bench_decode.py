"""Raw decode throughput, and the per-frame latency of an AF step with RoI-only decoding.

Usage: python benchmarks/bench_decode.py [--width 4608] [--height 2592] [--repeat 5] [--json]
       python benchmarks/bench_decode.py --af-step [--rois 12] [--roi 64]

``--af-step``: one AF step's per-frame latency for ``--rois`` RoIs of
``--roi`` x ``--roi`` view pixels on a RAW10 frame (columns layout, the RoIs
spread over the frame): decode + PDAF estimate (``hil_af.pdaf.estimate``,
xcorr) + decision (``hil_af.controller.methods.combine``, the confidence-
weighted disparity the controller moves on), with the frame decoded whole
(``decode_raw`` + ``crop_patches``) or only where the RoIs are
(``hil_af.rawroi.decode_rois``); for a mono dual-pixel sensor and for a
Bayer one (``cfa=RGGB``, 2x2 cells reduced).  Reports the medians of the
process's CPU time (``time.process_time``: the figure a dedicated core would
see, unaffected by other jobs on a shared machine) and their ratio.

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

from hil_af.controller.methods import combine
from hil_af.pdaf import crop_patches, estimate
from hil_af.rawdecode import decode_raw, pack_raw10, pack_raw12, unpack
from hil_af.rawroi import decode_rois


def _median_s(fn, repeat: int, clock=time.perf_counter) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times)


def af_step(W: int, H: int, n_rois: int, size: int, repeat: int) -> list[dict]:
    """Median per-frame latency (ms) of decode + estimate + decision, whole-frame vs RoI-only decode."""
    rng = np.random.default_rng(1)
    img = rng.integers(0, 1024, (H, W), dtype=np.uint16)
    stride = -(-(-(-W // 4) * 5) // 32) * 32
    buf = pack_raw10(img, stride)
    rows = []
    for cfa in (None, "RGGB"):
        k = 2 if cfa else 1
        vh, vw = H // k, W // 2 // k
        gy, gx = 3, max(1, n_rois // 3)
        rois = np.array([[int((i % gx + 0.5) * vw / gx) - size // 2, int((i // gx + 0.5) * vh / gy) - size // 2,
                          size, size] for i in range(n_rois)])
        w = np.ones(n_rois)

        def decide(L, R):
            d = estimate(L, R, white_level=1023.0)
            return combine(d.disparity_px, w, d.confidence)

        def whole():
            f = decode_raw(buf, W, H, fmt="RAW10", stride=stride, layout="columns", cfa=cfa, black_level=64)
            return decide(*crop_patches(f.left, f.right, rois))

        def roi_only():
            return decide(*decode_rois(buf, W, H, rois, fmt="RAW10", stride=stride, layout="columns", cfa=cfa,
                                       black_level=64))

        assert whole() == roi_only()  # the same decision either way
        # CPU time of this process (single-threaded numpy): robust to other jobs on a shared machine
        t_whole, t_roi = _median_s(whole, repeat, time.process_time), _median_s(roi_only, repeat, time.process_time)
        rows.append({"cfa": cfa or "mono", "rois": n_rois, "roi_px": size, "whole_ms": round(1e3 * t_whole, 2),
                     "roi_ms": round(1e3 * t_roi, 2), "ratio": round(t_whole / t_roi, 1)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=4608)
    ap.add_argument("--height", type=int, default=2592)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--af-step", action="store_true", help="per-frame AF step latency, whole vs RoI-only decode")
    ap.add_argument("--rois", type=int, default=12)
    ap.add_argument("--roi", type=int, default=64)
    a = ap.parse_args()
    W, H = a.width, a.height
    if a.af_step:
        res = af_step(W, H, a.rois, a.roi, a.repeat)
        if a.json:
            print(json.dumps({"width": W, "height": H, "machine": platform.machine(), "results": res}, indent=2))
            return
        print(f"AF step on a {W} x {H} RAW10 frame: {a.rois} RoIs of {a.roi} x {a.roi}, median CPU time of {a.repeat}")
        print(f"{'sensor':7} {'whole-frame ms':>15} {'RoI-only ms':>12} {'ratio':>6}")
        for r in res:
            print(f"{r['cfa']:7} {r['whole_ms']:15.2f} {r['roi_ms']:12.2f} {r['ratio']:6.1f}")
        return
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
