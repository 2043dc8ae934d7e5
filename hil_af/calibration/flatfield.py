"""Flat-field (SPC) gain maps: equal left/right response over the field.

The two half-aperture views of a dual-pixel sensor are shaded differently
(per-view vignetting: tens of percent towards the edges).  From one frame of
a uniformly lit white target, ``fit_flatfield`` measures on a grid of blocks
the median of the per-pixel ratio ``rho = L / R`` (robust to noise, hot
pixels, and to dust or blemishes on the target, which darken both views
alike), mends isolated outlier blocks (a knot far from the median of its
3 x 3 neighbourhood is replaced by it), optionally blurs the grid ([1 2 1]),
and stores per view a gain at each block centre (a *knot*) that brings the
view to the mean of both views: ``g_L = (L + R) / 2 / L = (1 + 1/rho) / 2``.
Gains between knots are bilinear; beyond the outer knots the border
segments are extrapolated linearly (for up to one knot spacing, then held).  The shading common to both views is kept (it does not bias the
disparity); only the left/right difference is removed.

Coordinates are on the sensor's full view plane (pixels, pixel (y, x) has
its centre at (y + 0.5, x + 0.5)), so one flat field serves frames cropped
anywhere on the same sensor: ``apply(frame)`` honours ``frame.origin`` and
checks ``frame.sensor_hw``.

FLAT.npz (version 1), loaded with ``allow_pickle=False``:

| key | dtype | shape | meaning |
|---|---|---|---|
| gain_left, gain_right | float32 | [Ky, Kx] | gain of each view at the knots (unitless) |
| knot_y, knot_x | float64 | [Ky], [Kx] | knot centres on the full plane, pixels, strictly increasing |
| sensor_hw | int32 | [2] | (H_full, W_full) of the sensor |
| origin, view_hw | int32 | [2] | where the white frame lay on the full plane, and its size |
| meta | str 0-d | | JSON: format "hil-af-flatfield", version 1, grid, smoothing, source, stats |
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_open
from ..errors import BadInput, FormatError
from ..frames import DualPixelFrame
from ..npzread import read_npz
from ..stackcheck import parse_meta

FORMAT = "hil-af-flatfield"
VERSION = 1
KEYS = ("gain_left", "gain_right", "knot_y", "knot_x", "sensor_hw", "origin", "view_hw", "meta")
DEFAULT_GRID = (16, 24)
MAX_FLATFIELD_BYTES = 64 << 20  # a gain grid is a few KiB; 64 MiB is far above any real one
GAIN_RANGE = (0.05, 20.0)  # plausible gains; outside -> a corrupt or wrong file


def _median3(a: np.ndarray) -> np.ndarray:
    """3 x 3 median over a 2-D grid, edges replicated."""
    p = np.pad(a, 1, mode="edge")
    stack = [p[i:i + a.shape[0], j:j + a.shape[1]] for i in range(3) for j in range(3)]
    return np.median(np.stack(stack), axis=0)


def _reject_outlier_knots(a: np.ndarray, k: float = 6.0, floor: float = 0.02) -> tuple[np.ndarray, int]:
    """Replace knots far from their 3 x 3 median (beyond k robust sigmas of all such deviations,
    and beyond ``floor``: 2 % in log ratio) by that median.

    A smooth field is left as it is (unlike a plain median filter, which
    flattens its extrema); an isolated bad block (a large blemish) is mended.
    """
    if min(a.shape) < 3:
        return a, 0
    med = _median3(a)
    dev = a - med
    sigma = 1.4826 * float(np.median(np.abs(dev - np.median(dev))))
    bad = np.abs(dev) > max(k * sigma, floor)
    return np.where(bad, med, a), int(bad.sum())


def _blur121(a: np.ndarray) -> np.ndarray:
    """Separable [1 2 1]/4 blur, edges extrapolated linearly (keeps a ramp at the border a ramp)."""
    out = a
    for ax in (0, 1):
        if out.shape[ax] < 3:
            continue
        m = np.moveaxis(out, ax, 0)
        first = 2 * m[:1] - m[1:2]
        last = 2 * m[-1:] - m[-2:-1]
        p = np.concatenate([first, m, last])
        m = 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]
        out = np.moveaxis(m, 0, ax)
    return out


def _interp_axis(q: np.ndarray, knots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(i0, t): bilinear weights of coordinates ``q`` between ``knots``.

    Beyond the outer knots the end segment is extrapolated linearly for up
    to one knot spacing, then held constant.
    """
    K = knots.size
    if K < 2:
        return np.zeros(q.shape, np.int64), np.zeros(q.shape)
    f = np.interp(q, knots, np.arange(K, dtype=np.float64))
    lo = q < knots[0]
    hi = q > knots[-1]
    f[lo] = (q[lo] - knots[0]) / (knots[1] - knots[0])
    f[hi] = K - 1 + (q[hi] - knots[-1]) / (knots[-1] - knots[-2])
    f = np.clip(f, -1.0, float(K))
    i0 = np.clip(np.floor(f).astype(np.int64), 0, K - 2)
    return i0, f - i0


@dataclass
class FlatField:
    """Per-view gain maps on a knot grid (see the module docstring).

    gain_left, gain_right: float [Ky, Kx], unitless.  knot_y, knot_x: knot
    centres on the full plane (pixels).  sensor_hw: (H_full, W_full).
    origin, view_hw: where the white frame that made it lay on the full plane.
    """

    gain_left: np.ndarray
    gain_right: np.ndarray
    knot_y: np.ndarray
    knot_x: np.ndarray
    sensor_hw: tuple[int, int]
    origin: tuple[int, int] = (0, 0)
    view_hw: tuple[int, int] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        self.sensor_hw = (int(self.sensor_hw[0]), int(self.sensor_hw[1]))
        self.origin = (int(self.origin[0]), int(self.origin[1]))
        if self.view_hw is None:
            self.view_hw = self.sensor_hw
        self.view_hw = (int(self.view_hw[0]), int(self.view_hw[1]))
        self._cache: dict[tuple[int, int, int, int], tuple[np.ndarray, np.ndarray]] = {}

    @property
    def name(self) -> str:
        return str(self.path) if self.path else "flat field"

    def gains(self, origin: tuple[int, int], hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(g_left, g_right) float32 [h, w] for the region of size ``hw`` at ``origin`` (y0, x0) on the full plane."""
        key = (int(origin[0]), int(origin[1]), int(hw[0]), int(hw[1]))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        y = key[0] + np.arange(key[2]) + 0.5
        x = key[1] + np.arange(key[3]) + 0.5
        iy, ty = _interp_axis(y, self.knot_y)
        ix, tx = _interp_axis(x, self.knot_x)
        out = []
        for g in (np.asarray(self.gain_left, np.float64), np.asarray(self.gain_right, np.float64)):
            if g.shape[1] > 1:
                gx = g[:, ix] * (1 - tx) + g[:, ix + 1] * tx  # [Ky, w]
            else:
                gx = np.repeat(g, x.size, axis=1)
            if g.shape[0] > 1:
                gy = gx[iy] * (1 - ty)[:, None] + gx[iy + 1] * ty[:, None]
            else:
                gy = np.repeat(gx, y.size, axis=0)
            out.append(gy.astype(np.float32))
        res = (out[0], out[1])
        if len(self._cache) >= 16:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = res
        return res

    def _check_sensor(self, sensor_hw: tuple[int, int] | None) -> None:
        if sensor_hw is not None and tuple(int(v) for v in sensor_hw) != self.sensor_hw:
            raise BadInput(f"{self.name}: made for a sensor of {self.sensor_hw[0]}x{self.sensor_hw[1]} (H x W), "
                           f"but the frame's sensor_hw is {tuple(sensor_hw)}")

    def apply(self, frame: DualPixelFrame) -> DualPixelFrame:
        """A new frame with each view multiplied by its gain (frame.origin honoured)."""
        self._check_sensor(frame.sensor_hw)
        gl, gr = self.gains(frame.origin, frame.shape)
        md = dict(frame.metadata)
        md["flatfield"] = self.name
        return DualPixelFrame(left=frame.left * gl, right=frame.right * gr, lens_position=frame.lens_position,
                              timestamp_s=frame.timestamp_s, sensor_hw=frame.sensor_hw, origin=frame.origin,
                              white_level=frame.white_level, metadata=md)

    def roi_gains(self, rois_full: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gains [P, h, w] for RoIs (x, y, w, h) given on the full plane (all the same size)."""
        rois_full = np.asarray(rois_full, dtype=np.int64).reshape(-1, 4)
        gl, gr = [], []
        for x, y, w, h in rois_full:
            a, b = self.gains((int(y), int(x)), (int(h), int(w)))
            gl.append(a)
            gr.append(b)
        return np.stack(gl), np.stack(gr)

    def __call__(self, left: np.ndarray, right: np.ndarray, roi_full_xywh: tuple[int, int, int, int],
                 sensor_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Correct one RoI's patches; ``roi_full_xywh`` is the RoI on the full plane (for hil_af.model)."""
        self._check_sensor(sensor_hw)
        x, y, w, h = (int(v) for v in roi_full_xywh)
        gl, gr = self.gains((y, x), (h, w))
        return np.asarray(left) * gl, np.asarray(right) * gr

    def save(self, path: str | os.PathLike) -> Path:
        """Write FLAT.npz atomically; returns the path."""
        p = Path(path)
        meta = {"format": FORMAT, "version": VERSION, **{k: v for k, v in self.meta.items() if k not in ("format", "version")}}
        arrays: dict[str, np.ndarray] = {
            "gain_left": np.asarray(self.gain_left, np.float32),
            "gain_right": np.asarray(self.gain_right, np.float32),
            "knot_y": np.asarray(self.knot_y, np.float64),
            "knot_x": np.asarray(self.knot_x, np.float64),
            "sensor_hw": np.asarray(self.sensor_hw, np.int32),
            "origin": np.asarray(self.origin, np.int32),
            "view_hw": np.asarray(self.view_hw, np.int32),
            "meta": np.array(json.dumps(meta)),
        }
        _validate(arrays, meta, f"{p} (writing)")
        with atomic_open(p, "wb") as f:
            np.savez_compressed(f, **arrays)  # type: ignore[arg-type]
        self.path = p
        return p


def fit_flatfield(frame: DualPixelFrame, grid: tuple[int, int] = DEFAULT_GRID, smooth: bool = False,
                  source: str | None = None) -> FlatField:
    """A FlatField from one frame of a uniformly lit white target (black level subtracted).

    grid: (rows, cols) of blocks over the frame; each block gives one knot.
    smooth: apply the [1 2 1] blur after the 3 x 3 median.
    Raises BadInput when the frame is too dark or mostly saturated.
    """
    rows, cols = (int(v) for v in grid)
    H, W = frame.shape
    if rows < 1 or cols < 1 or H // rows < 2 or W // cols < 2:
        raise BadInput(f"flat-field grid {rows}x{cols} does not fit a {W}x{H} frame (blocks need >= 2 px)")
    L = np.asarray(frame.left, np.float64)
    R = np.asarray(frame.right, np.float64)
    if not (np.isfinite(L).all() and np.isfinite(R).all()):
        raise BadInput("flat-field frame holds non-finite pixel values")
    wl = frame.white_level
    if wl is not None and np.isfinite(wl) and wl > 0:
        sat = max(float((L >= 0.98 * wl).mean()), float((R >= 0.98 * wl).mean()))
        if sat > 0.05:
            raise BadInput(f"flat-field frame is {100 * sat:.0f}% saturated: lower the exposure or the light")
        dark = max(wl * 0.02, 1.0)
    else:
        dark = 1.0
    ys = np.linspace(0, H, rows + 1).round().astype(int)
    xs = np.linspace(0, W, cols + 1).round().astype(int)
    bl = np.empty((rows, cols))
    br = np.empty((rows, cols))
    rho = np.empty((rows, cols))
    for i in range(rows):
        for j in range(cols):
            lb = L[ys[i]:ys[i + 1], xs[j]:xs[j + 1]]
            rb = R[ys[i]:ys[i + 1], xs[j]:xs[j + 1]]
            bl[i, j] = np.median(lb)
            br[i, j] = np.median(rb)
            ok = (lb > dark) & (rb > dark)
            # median of the per-pixel ratio: dust and target blemishes darken both views alike
            rho[i, j] = np.median(lb[ok] / rb[ok]) if ok.sum() >= 4 else np.nan
    if min(bl.min(), br.min()) < dark or not np.isfinite(rho).all():
        raise BadInput(f"flat-field frame is too dark (a block median is {min(bl.min(), br.min()):.1f} DN above black; "
                       f"need >= {dark:.1f}): show a brighter white target")
    lr = np.log(rho)
    lr, replaced = _reject_outlier_knots(lr)
    if smooth:
        lr = _blur121(lr)
    rho = np.exp(lr)
    mean = 0.5 * (bl + br)
    y0, x0 = frame.origin
    knot_y = y0 + 0.5 * (ys[:-1] + ys[1:])
    knot_x = x0 + 0.5 * (xs[:-1] + xs[1:])
    meta = {"grid": [rows, cols], "smooth": bool(smooth), "source": source or str(frame.metadata.get("source", "frame")),
            "white_mean_dn": float(mean.mean()), "lr_ratio_min": float(rho.min()), "lr_ratio_max": float(rho.max()),
            "outlier_knots_replaced": int(replaced)}
    # g_L * L = g_R * R = (L + R) / 2  with  rho = L / R
    return FlatField(gain_left=0.5 * (1.0 + 1.0 / rho), gain_right=0.5 * (1.0 + rho), knot_y=knot_y, knot_x=knot_x,
                     sensor_hw=frame.sensor_hw, origin=frame.origin, view_hw=frame.shape, meta=meta)  # type: ignore[arg-type]


def _fail(where: str, rule: str) -> FormatError:
    return FormatError(f"{where}: not a valid flat-field file: {rule}")


def _validate(a: dict[str, np.ndarray], meta: dict[str, Any], where: str) -> None:
    if meta.get("format") != FORMAT:
        raise _fail(where, f"meta format is {meta.get('format')!r}, expected {FORMAT!r}")
    if isinstance(meta.get("version"), bool) or meta.get("version") not in (VERSION,):
        raise _fail(where, f"unknown version {meta.get('version')!r} (known: {VERSION})")
    gl, gr = a["gain_left"], a["gain_right"]
    if gl.ndim != 2 or gl.shape != gr.shape or gl.size < 1:
        raise _fail(where, f"gain_left {gl.shape} and gain_right {gr.shape} must be equal 2-D grids")
    ky, kx = a["knot_y"], a["knot_x"]
    if ky.shape != (gl.shape[0],) or kx.shape != (gl.shape[1],):
        raise _fail(where, f"knot_y {ky.shape} / knot_x {kx.shape} do not match the gain grid {gl.shape}")
    for name, arr in (("gain_left", gl), ("gain_right", gr), ("knot_y", ky), ("knot_x", kx)):
        if arr.dtype.kind != "f" or not np.isfinite(arr).all():
            raise _fail(where, f"{name} must be finite floats")
    if not (np.all(np.diff(ky) > 0) and np.all(np.diff(kx) > 0)):
        raise _fail(where, "knot_y and knot_x must be strictly increasing")
    lo, hi = GAIN_RANGE
    if min(gl.min(), gr.min()) < lo or max(gl.max(), gr.max()) > hi:
        raise _fail(where, f"gains outside the plausible range [{lo}, {hi}]")
    for name in ("sensor_hw", "origin", "view_hw"):
        v = a[name]
        if v.shape != (2,) or v.dtype.kind not in "iu":
            raise _fail(where, f"{name} must be 2 integers, got {v.dtype} {v.shape}")
    shw, org, vhw = a["sensor_hw"], a["origin"], a["view_hw"]
    if shw.min() < 1 or vhw.min() < 1 or org.min() < 0 or np.any(org + vhw > shw):
        raise _fail(where, f"origin {org.tolist()} + view_hw {vhw.tolist()} does not lie inside sensor_hw {shw.tolist()}")


def load_flatfield(path: str | os.PathLike) -> FlatField:
    """Read and validate FLAT.npz; FormatError naming the file and the rule."""
    p = Path(path)
    where = str(p)
    a = read_npz(p, KEYS, what="flat-field file", max_bytes=MAX_FLATFIELD_BYTES)
    meta = parse_meta(a["meta"], where)
    _validate(a, meta, where)
    return FlatField(gain_left=a["gain_left"].astype(np.float64), gain_right=a["gain_right"].astype(np.float64),
                     knot_y=a["knot_y"], knot_x=a["knot_x"], sensor_hw=tuple(int(v) for v in a["sensor_hw"]),  # type: ignore[arg-type]
                     origin=tuple(int(v) for v in a["origin"]), view_hw=tuple(int(v) for v in a["view_hw"]),  # type: ignore[arg-type]
                     meta=meta, path=p)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (recorded in CAL.json for the flat field used)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def block_ratio(frame: DualPixelFrame, grid: tuple[int, int] = DEFAULT_GRID) -> np.ndarray:
    """Left/right ratio of the block means of a frame [rows, cols] (to check a flat field)."""
    rows, cols = grid
    H, W = frame.shape
    ys = np.linspace(0, H, rows + 1).round().astype(int)
    xs = np.linspace(0, W, cols + 1).round().astype(int)
    out = np.empty((rows, cols))
    for i in range(rows):
        for j in range(cols):
            lb = frame.left[ys[i]:ys[i + 1], xs[j]:xs[j + 1]].astype(np.float64).mean()
            rb = frame.right[ys[i]:ys[i + 1], xs[j]:xs[j + 1]].astype(np.float64).mean()
            out[i, j] = lb / rb if rb > 0 else np.nan
    return out
