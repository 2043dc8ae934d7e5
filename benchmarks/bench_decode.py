"""Raw decode throughput, and the per-frame latency of an AF step with RoI-only decoding.

Usage: python benchmarks/bench_decode.py [--width 4608] [--height 2592] [--repeat 5] [--json]
       python benchmarks/bench_decode.py --af-step [--rois 12] [--roi 64] [--texture noise|natural] [--model DIR ...]

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

``--af-step`` also measures the step THROUGH THE CONTROLLER, as a rig runs it:
a ``picamera2://`` source (Bayer 2PD, RGGB, on the fake ``picamera2`` module
at the library boundary) inside a ``FocusSession``, one call of the
controller's step functions: ``_pdaf_measure`` (capture, exposure and lens
checks, the per-position calibrated PDAF estimate with its wider second look,
the confidence gate and the weighted median) and ``_pe_step`` (capture,
step-1 model on the 12 RoIs in one onnxruntime batch, the structure gate
``run_pe`` applies: ``views_structure``, an xcorr +-8 px per RoI; decision) and ``pe-nogate``
(the same step without the gate: the floor that no change to the gate can
go below), with the session given the RoIs (``RoiFrame``: only they are decoded) or not (whole
frames, ``Controller(roi_decode=False)``).  The fake camera models
picamera2's buffers (hil_af.drivers.fake_picamera2): the frame sits in a
mapped camera buffer (written once: the camera's DMA costs no CPU), the
whole-frame path copies it whole with ``make_array`` (request.py: ``np.copy``
of the mapped buffer) as ``capture()`` does on a rig, the RoI path reads the
RoIs inside ``MappedArray`` (no copy).  That copy's cost is also reported on
its own line, and so is the whole-frame decode alone (run in the same
interleaved loop as each step, so that the ratio ``whole decode / RoI``
compares times taken under the same load).  Medians and bests of
``--repeat`` interleaved runs: on a loaded machine the best is the closer to
what a dedicated core would see.

Measured (x86: a 2-core AMD EPYC machine shared with mutation runs, load
4.8-5.3; nothing here ran on a Pi; medians of 6 runs of ``--repeat 15``,
interleaved with the code before the PE-step work): PDAF step 6.4 ms RoI-only
vs 93 ms whole-frame (14.4x; bests 4.8 vs 75 ms), the whole-frame decode
alone (88 ms) 12.9x the PDAF step; PE step (with the structure gate) 13.1 vs
108 ms (8.5x), the decode alone 7.1x the PE step (runs 6.4-7.7x); the PE step
without the gate (``pe-nogate``) 10.7 ms, 8.8x (runs 8.5-9.1x): short of 10x
even with no gate at all.  The code before, same runs: PDAF 7.0 ms (12.4x),
PE 11.7 ms (7.0x), without the gate 10.8 ms (8.2x): the run-to-run spread
(PE 10.7-15.3 ms) is larger than the PE-step changes, which an in-process
A/B resolves (PE step 12.7 -> 12.4 ms, the gate's share 1.46 -> 1.16 ms).
Where a RoI step's time goes (per-part medians, warm, load 2.4-5.5):
PE = onnxruntime ~5.4 ms (best 3.4; no session option measured faster) +
capture ~3.8 (best 2.2: the RoIs' decode, the exposure check, the request)
+ structure gate ~2.1 + encoding ~0.6 + logit decoding ~0.4; PDAF (earlier,
load ~6.6) = the RoIs' decode ~2.1-2.8 ms (the whole-frame decode's unpack
and Bayer reduction on 1/30 of its pixels) + estimator ~2.0 (normalisation
0.5, xcorr 1.5) + ~0.9 exposure check and bookkeeping.  No page faults in a
RoI step here (its arrays come back from the allocator's free lists); the
whole-frame decode's fresh 10-50 MB arrays do fault (with glibc told to keep
its heap, MALLOC_TRIM_THRESHOLD_ / MALLOC_MMAP_THRESHOLD_, one run gave 56 ms
instead of 71).

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


def _step_fn(name: str, session, ctx, rois: np.ndarray, weights: np.ndarray):
    """One controller AF step (``pdaf``: ``_pdaf_measure``; ``pe``: ``_pe_step``, model step 1 with the
    structure gate ``run_pe`` applies, ``MethodConfig.pe_min_structure``; ``pe-nogate``: the same
    without the gate, the floor no change to the gate can go below) -> its decision."""
    from hil_af.controller.methods import _pdaf_measure, _pe_step

    def step():
        session.steps = 0  # a benchmark, not a focus cycle: no step limit
        if name == "pdaf":
            return _pdaf_measure(session, ctx, ctx.pdaf(False), rois, weights, "target_position")[1:]
        gate = ctx.config.pe_min_structure if name == "pe" else 0.0
        return _pe_step(session, ctx.pe(1), rois, weights, gate)[:2]

    return step


def controller_step(W: int, H: int, n_rois: int, size: int, repeat: int, models: tuple[str, ...] = (),
                    texture: str = "noise") -> list[dict]:
    """Median and best CPU ms of one controller AF step (pdaf, pe) on a picamera2:// RAW10 Bayer 2PD
    frame, whole-frame vs RoI-only decode (module doc); of the whole-frame decode alone (the ratio
    ``decode_ratio`` = that / the RoI step, the issue's yardstick); of picamera2's make_array copy.
    ``models``: more model folders whose PE step (with the gate) is measured in the same loop, as
    step ``pe@<folder>``; ``texture``: the frame's content, ``noise`` (white noise, the views 1 px
    apart: the structure gate's worst case, its shift-0 bound settles nothing) or ``natural`` (the
    sim's natural-image texture blurred by 1.5 px sigma, the views 2 px apart: an out-of-focus frame
    as an AF step sees it, where the bound settles the RoIs)."""
    import shutil
    import tempfile
    from pathlib import Path

    from hil_af.drivers.fakes import fake_picamera2_module
    from hil_af.paths import REPO_ROOT

    rng = np.random.default_rng(2)
    vh, vw = H // 2, W // 4
    if texture == "natural":  # the sim's natural-image texture (1/f^beta, dead leaves), defocused, 2 view px apart
        from hil_af.sim.scene import texture_natural

        t = texture_natural(rng, (vh, vw + 2)).astype(np.float64)
        F = np.fft.rfft2(t) * np.exp(-2.0 * (np.pi * 1.5) ** 2 * (np.fft.fftfreq(vh)[:, None] ** 2
                                                                  + np.fft.rfftfreq(vw + 2)[None, :] ** 2))
        t = np.fft.irfft2(F, s=t.shape)  # a Gaussian blur of 1.5 px sigma: out of focus, as an AF step sees it
        tex = np.clip(100 + 800 * t, 0, 1023).astype(np.uint16)
        views = (tex[:, :vw], tex[:, 2:vw + 2])
    else:  # white noise, 1 view px apart: the gate's worst case (no correlation at shift 0)
        tex = rng.integers(100, 900, (vh, vw + 1)).astype(np.uint16)
        views = (tex[:, :vw], tex[:, 1:])
    img = np.empty((H, W), np.uint16)
    for k, v in enumerate(views):
        img[:, k::2] = np.repeat(np.repeat(v, 2, axis=0), 2, axis=1)
    gy, gx = 3, max(1, n_rois // 3)
    rois = np.array([[int((i % gx + 0.5) * vw / gx) - size // 2, int((i // gx + 0.5) * vh / gy) - size // 2,
                      size, size] for i in range(n_rois)])
    weights = np.full(n_rois, 1.0 / n_rois)
    tmp = Path(tempfile.mkdtemp())  # the rig profile and calibration; removed at the end
    cal = json.loads((REPO_ROOT / "calibration/examples/sim-default/cal.json").read_text())
    cal["sensor_hw"] = [vh, vw]  # the example's 3x4 per-position cells, stretched over this sensor
    cal.pop("flatfield", None)
    (tmp / "cal.json").write_text(json.dumps(cal))
    (tmp / "rig.toml").write_text('[rig]\nsource = "picamera2://0?layout=columns&format=SRGGB10_CSI2P"\n'
                                  'lens = "libcamera-lens://0?units=code"\n'
                                  '[lens_map]\ndioptres = [0.0, 15.0]\ncodes = [0, 800]\n[sensor]\ndual_pixel = true\n')
    mod = fake_picamera2_module(raw_size=(W, H), fmt="SRGGB10_CSI2P", cfa=0, image=lambda d, n: img)
    try:
        return _controller_rows(mod, tmp, rois, weights, repeat, models)
    finally:
        shutil.rmtree(tmp)


def _controller_rows(mod, tmp, rois: np.ndarray, weights: np.ndarray, repeat: int,
                     models: tuple[str, ...] = ()) -> list[dict]:
    import sys
    from unittest import mock

    from hil_af.clock import SimClock
    from hil_af.controller.core import Controller
    from hil_af.controller.session import FocusSession
    from hil_af.drivers.registry import open_rig

    n_rois, size = len(rois), int(rois[0, 2])
    rows = []
    with mock.patch.dict(sys.modules, {"picamera2": mod}), open_rig(str(tmp / "rig.toml"), clock=SimClock()) as rig:
        rig.lens.move_to(400.0)
        request, md = rig.source._confirmed_request()
        buf = request.make_array("raw")
        request.release()
        copy_ms = 1e3 * _median_s(lambda: np.copy(buf), repeat, time.process_time)

        def decode():  # the whole-frame decode alone
            return rig.source._decode(buf, md)

        decodes: list[float] = []  # every step's runs interleave it: the ratio's yardstick under the same load
        for name in ("pdaf", "pe", "pe-nogate") + tuple(f"pe@{m}" for m in models):
            steps, times = {}, {"whole": [], "roi": [], "decode": []}
            model_dir = name.partition("@")[2] or None
            for path, roi_decode in (("whole", False), ("roi", True)):
                ctl = Controller(rig, method="pdaf", calibration=str(tmp / "cal.json"), roi_decode=roi_decode,
                                 model_dir=model_dir)
                session = FocusSession(rig, ctl.limits, ctl.slice_positions(), rois=rois if roi_decode else None)
                steps[path] = _step_fn(name.partition("@")[0], session, ctl.estimators, rois, weights)
            decisions = {path: fn() for path, fn in steps.items()}  # also loads the estimators
            assert decisions["whole"] == decisions["roi"], decisions  # the same decision either way
            steps["decode"] = decode
            decode()  # warm up
            for _ in range(repeat):  # interleaved: drifting load hits both paths and the decode alike
                for path, fn in steps.items():
                    t0 = time.process_time()
                    fn()
                    times[path].append(1e3 * (time.process_time() - t0))
            decodes += times["decode"]
            w, r = statistics.median(times["whole"]), statistics.median(times["roi"])
            wb, rb = min(times["whole"]), min(times["roi"])
            rows.append({"step": name, "rois": n_rois, "roi_px": size, "whole_ms": round(w, 2), "roi_ms": round(r, 2),
                         "ratio": round(w / r, 1), "whole_best_ms": round(wb, 2), "roi_best_ms": round(rb, 2),
                         "best_ratio": round(wb / rb, 1),
                         "decode_ratio": round(statistics.median(times["decode"]) / r, 1)})
    rows.append({"step": "whole-frame decode", "ms": round(statistics.median(decodes), 2)})
    rows.append({"step": "make_array copy", "bytes": int(buf.nbytes), "ms": round(copy_ms, 2)})
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
    ap.add_argument("--texture", choices=("noise", "natural"), default="noise",
                    help="with --af-step: the controller frame's content (controller_step)")
    ap.add_argument("--model", action="append", default=[], metavar="DIR",
                    help="with --af-step: also the PE step with this model folder (repeatable)")
    a = ap.parse_args()
    W, H = a.width, a.height
    if a.af_step:
        res = af_step(W, H, a.rois, a.roi, a.repeat)
        ctl = controller_step(W, H, a.rois, a.roi, a.repeat, tuple(a.model), a.texture)
        if a.json:
            print(json.dumps({"width": W, "height": H, "machine": platform.machine(), "results": res,
                              "controller": ctl}, indent=2))
            return
        print(f"AF step on a {W} x {H} RAW10 frame: {a.rois} RoIs of {a.roi} x {a.roi}, median CPU time of {a.repeat}")
        print(f"{'sensor':7} {'whole-frame ms':>15} {'RoI-only ms':>12} {'ratio':>6}")
        for r in res:
            print(f"{r['cfa']:7} {r['whole_ms']:15.2f} {r['roi_ms']:12.2f} {r['ratio']:6.1f}")
        print(f"through the controller (picamera2:// Bayer 2PD, FocusSession, one step; capture to decision; "
              f"{a.texture} texture):")
        print(f"{'step':20} {'whole-frame ms':>15} {'RoI-only ms':>12} {'ratio':>6} {'best of':>8} {'whole':>7} "
              f"{'RoI':>6} {'ratio':>6} {'whole decode / RoI':>19}")
        for r in ctl[:-2]:
            print(f"{r['step']:20} {r['whole_ms']:15.2f} {r['roi_ms']:12.2f} {r['ratio']:6.1f} {a.repeat:8d} "
                  f"{r['whole_best_ms']:7.2f} {r['roi_best_ms']:6.2f} {r['best_ratio']:6.1f} {r['decode_ratio']:19.1f}")
        print(f"whole-frame decode alone (picamera2:// capture()'s decode_raw): {ctl[-2]['ms']:.2f} ms")
        print(f"picamera2's make_array copy of the {ctl[-1]['bytes'] / 1e6:.1f} MB buffer, in the whole-frame "
              f"step only (the RoI step reads the mapped buffer): {ctl[-1]['ms']:.2f} ms")
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
