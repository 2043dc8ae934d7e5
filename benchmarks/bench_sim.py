"""Simulator speed and fidelity: capture time per frame, and contrast-peak vs truth, per profile.

Usage: python benchmarks/bench_sim.py [--profile sim-default ...] [--frames 49] [--seeds 4] [--json out.json]
                                     [--figures DIR]

Speed: a 49-slice lens sweep on ``sim://?seed=S&profile=P`` (virtual clock,
one thread), wall time of ``capture()`` per frame (render + sensor noise),
median / p90 / max, plus ``render()`` alone.  Fidelity: for each seed, the
Laplacian-energy contrast peak (parabolic refinement) of each standard RoI
in that sweep minus the ground truth ``rig.truth`` in slices (mean, RMS,
max |.|); and the measured disparity slope (px per dioptre, FFT
cross-correlation) at the centre and the top-left RoI.  docs/sim.md quotes
this output.  ``--figures DIR`` also writes the PNGs shown in docs/sim.md
(needs matplotlib).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from hil_af.clock import SimClock  # noqa: E402
from hil_af.drivers.registry import open_rig  # noqa: E402
from hil_af.frames import centre_roi, grid_rois  # noqa: E402


def contrast(patch: np.ndarray) -> float:
    g = patch.astype(np.float64)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float((lap**2).mean() / (g.mean() ** 2 + 1e-9))


def xcorr_shift(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    win = np.hanning(a.shape[0])[:, None] * np.hanning(a.shape[1])[None, :]
    c = np.fft.ifft2(np.conj(np.fft.fft2(a * win)) * np.fft.fft2(b * win)).real[0]
    n = len(c)
    i = int(np.argmax(c))
    lo, mid, hi = c[(i - 1) % n], c[i], c[(i + 1) % n]
    d = i + 0.5 * (lo - hi) / (lo - 2 * mid + hi)
    return float(d - n if d > n / 2 else d)


def sweep(profile: str, seed: int, frames: int) -> dict:
    rig = open_rig(f"sim://?seed={seed}&profile={profile}", clock=SimClock())
    rois = grid_rois(rig.source.sensor_hw, 3, 4)
    pos = rig.slice_positions(frames)
    C = np.zeros((len(pos), len(rois)))
    cap_ms, ren_ms = [], []
    for i, p in enumerate(pos):
        rig.lens.move_to(p)
        rig.clock.sleep(rig.lens.settle_time_s)
        t = time.perf_counter()
        f = rig.source.capture()
        cap_ms.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        rig.source.render(p)
        ren_ms.append((time.perf_counter() - t) * 1e3)
        for j, roi in enumerate(rois):
            left, right = f.crop(roi)
            C[i, j] = contrast(left + right)
    peak = C.argmax(axis=0).astype(float)
    for j in range(len(rois)):
        i = int(peak[j])
        if 0 < i < len(pos) - 1:
            lo, mid, hi = np.log(C[i - 1 : i + 2, j])
            peak[j] = i + 0.5 * (lo - hi) / (lo - 2 * mid + hi)
    truth = np.interp(rig.truth(rois), pos, np.arange(len(pos)))
    rig.close()
    return {"capture_ms": cap_ms, "render_ms": ren_ms, "peak_minus_truth": list(peak - truth)}


def disparity_slopes(profile: str) -> dict:
    rig = open_rig(f"sim://?seed=3&scene=chart&depth_m=0.25&noise=0&profile={profile}", clock=SimClock())
    out = {}
    for name, roi in (("centre", centre_roi(rig.source.sensor_hw)), ("top-left", grid_rois(rig.source.sensor_hw, 3, 4)[0])):
        d = []
        for dz in (-2.0, 2.0):
            code = rig.lens_map.to_code(rig.source.truth_dioptres(roi)[0] - dz)
            left, right = rig.source.render(code)
            x, y, w, h = roi
            d.append(xcorr_shift(left[y : y + h, x : x + w].astype(np.float64), right[y : y + h, x : x + w].astype(np.float64)))
        out[name] = {"px_per_dioptre": (d[1] - d[0]) / 4.0, "offset_px": (d[1] + d[0]) / 2.0}
    rig.close()
    return out


def figures(out_dir: str, profiles: list[str]) -> None:
    """sim-views.png (L, R, L-R of a cards scene, per profile) and sim-disparity.png
    (measured disparity vs defocus at the centre and the top-left RoI, per profile)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    fig, axes = plt.subplots(len(profiles), 3, figsize=(12, 2.9 * len(profiles)), squeeze=False)
    for row, prof in zip(axes, profiles):
        rig = open_rig(f"sim://?seed=2&profile={prof}", clock=SimClock())
        rois = grid_rois(rig.source.sensor_hw, 3, 4)
        rig.lens.move_to(float(np.clip(rig.truth(rois)[5], 0, 1023)))
        rig.clock.sleep(rig.lens.settle_time_s)
        f = rig.source.capture()
        for ax, img, title in ((row[0], f.left, "left"), (row[1], f.right, "right"), (row[2], f.left - f.right, "left - right")):
            if title == "left - right":
                lim = float(np.percentile(np.abs(img), 99))
                ax.imshow(img, cmap="RdBu", vmin=-lim, vmax=lim, interpolation="nearest")
            else:
                ax.imshow(img, cmap="gray", vmin=0, vmax=f.white_level, interpolation="nearest")
            for x, y, w, h in rois:
                ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, ec="y", lw=0.6))
            ax.set_title(f"{prof}: {title} (lens at truth of RoI 5)", fontsize=9)
            ax.axis("off")
        rig.close()
    fig.tight_layout()
    path = os.path.join(out_dir, "sim-views.png")
    fig.savefig(path, dpi=56)
    plt.close(fig)
    from PIL import Image  # matplotlib's own dependency; a 128-colour palette keeps the PNG small

    Image.open(path).convert("RGB").quantize(colors=128).save(path, optimize=True)

    fig, ax = plt.subplots(figsize=(6, 4))
    dzs = np.linspace(-3, 3, 25)
    for prof, ls in zip(profiles, ("-", "--")):
        rig = open_rig(f"sim://?seed=3&scene=chart&depth_m=0.25&noise=0&profile={prof}", clock=SimClock())
        for name, roi in (("centre", centre_roi(rig.source.sensor_hw)), ("top-left", grid_rois(rig.source.sensor_hw, 3, 4)[0])):
            x, y, w, h = roi
            d = []
            for dz in dzs:
                left, right = rig.source.render(rig.lens_map.to_code(rig.source.truth_dioptres(roi)[0] - dz))
                d.append(xcorr_shift(left[y : y + h, x : x + w].astype(np.float64), right[y : y + h, x : x + w].astype(np.float64)))
            ax.plot(dzs, d, ls, label=f"{prof} {name}")
        rig.close()
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("defocus (scene - lens focus), dioptres")
    ax.set_ylabel("measured R - L shift, px")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "sim-disparity.png"), dpi=80)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", action="append")
    ap.add_argument("--frames", type=int, default=49)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--json")
    ap.add_argument("--figures", metavar="DIR")
    a = ap.parse_args()
    report = {}
    for prof in a.profile or ["sim-default", "sim-wide"]:
        cap, ren, err = [], [], []
        for s in range(1, a.seeds + 1):
            r = sweep(prof, s, a.frames)
            cap += r["capture_ms"]
            ren += r["render_ms"]
            err += r["peak_minus_truth"]
        e = np.array(err)
        report[prof] = {
            "frames": len(cap),
            "capture_ms_median": float(np.median(cap)), "capture_ms_p90": float(np.percentile(cap, 90)),
            "capture_ms_max": float(np.max(cap)), "render_ms_median": float(np.median(ren)),
            "peak_minus_truth_slices_mean": float(e.mean()), "peak_minus_truth_slices_rms": float(np.sqrt((e**2).mean())),
            "peak_minus_truth_slices_max_abs": float(np.abs(e).max()),
            "disparity": disparity_slopes(prof),
        }
    print(f"{'profile':<12} {'frames':>6} {'cap med':>8} {'cap p90':>8} {'cap max':>8} {'render':>7} "
          f"{'pk-gt mean':>10} {'pk-gt rms':>9} {'pk-gt max':>9}  disparity px/D, offset px (centre | top-left)")
    for prof, b in report.items():
        d = b["disparity"]
        print(f"{prof:<12} {b['frames']:6d} {b['capture_ms_median']:8.2f} {b['capture_ms_p90']:8.2f} "
              f"{b['capture_ms_max']:8.2f} {b['render_ms_median']:7.2f} {b['peak_minus_truth_slices_mean']:10.2f} "
              f"{b['peak_minus_truth_slices_rms']:9.2f} {b['peak_minus_truth_slices_max_abs']:9.2f}  "
              f"{d['centre']['px_per_dioptre']:.2f}, {d['centre']['offset_px']:+.2f} | "
              f"{d['top-left']['px_per_dioptre']:.2f}, {d['top-left']['offset_px']:+.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)
    if a.figures:
        figures(a.figures, a.profile or ["sim-default", "sim-wide"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
