"""The simulated dual-pixel camera: a FrameSource rendering a card scene through the sim lens.

Rendering (per capture, at the lens's *actual* position on the clock):
for each of the 3 x 4 cells (= standard RoI cells) the cell's card texture
is convolved (FFT) with the left / right half-aperture OTFs evaluated at
that cell's field point (the standard RoI centre) and depth; a cell with an
occluder (``natural`` scene) also blurs the occluder's premultiplied texture
and its coverage with the OTFs of the occluder's depth and composites
``fg + (1 - coverage) * card`` per view (a depth edge); the cells are
composited, multiplied by the per-view vignetting and the exposure (DN for
reflectance 1), then the sensor adds shot noise (conversion gain e-/DN) and
read noise (DN), adds the black level, rounds to integers and clips to
[0, white_level].  The returned frame has the black level subtracted.

Frames come at most one per ``frame_time_s`` on the clock (a streaming
sensor): a capture sooner than that after the previous one waits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..clock import Clock
from ..drivers.base import ContextMixin
from ..errors import BadInput, DeviceError, DeviceTimeout
from ..frames import DualPixelFrame, grid_rois, validate_rois
from ..optics import LensMap
from .lens import SimLens
from .params import SimParams
from .psf import curvature_dioptres, disparity_px, field_xy, half_aperture_otfs, kernel_reach_px, vignetting_maps
from .scene import GRID, SCENES, Scene, cell_edges, make_scene

FAULT_FRAMES = ("black", "saturated", "flat", "timeout")
TIMEOUT_S = 0.5  # clock seconds a timed-out capture waits before raising
PAD_PX = 40  # texture margin around a cell; blur radius is clipped to PAD_PX - 8
PADS = (10, 20, PAD_PX)  # margins tried per cell: the smallest that holds the kernel (smaller FFTs)


def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (fast FFT sizes)."""
    m = n
    while True:
        k = m
        for f in (2, 3, 5):
            while k % f == 0:
                k //= f
        if k == 1:
            return m
        m += 1


class SimCamera(ContextMixin):
    """FrameSource of the simulator; ``sensor_hw`` = (params.height, params.width), frames uncropped."""

    def __init__(self, params: SimParams, lens: SimLens, lens_map: LensMap, clock: Clock, *, seed: int = 0,
                 scene: str = "cards", depth_m: float | None = None, noise: float = 1.0,
                 fault_frame: str | None = None, fault_p: float = 0.0, name: str = "sim"):
        if fault_frame is not None and fault_frame not in FAULT_FRAMES:
            raise BadInput(f"fault_frame={fault_frame!r}: must be one of {', '.join(FAULT_FRAMES)}")
        if not 0.0 <= fault_p <= 1.0:
            raise BadInput(f"fault_p={fault_p}: must be a probability in [0, 1]")
        if not (np.isfinite(noise) and noise >= 0):
            raise BadInput(f"noise={noise}: must be a scale >= 0 (1 = the profile's noise)")
        self._p = params
        self.lens = lens
        self.lens_map = lens_map
        self._clock = clock
        self.seed = int(seed)
        self.noise = float(noise)
        self.fault_frame = fault_frame
        self.fault_p = float(fault_p)
        self.name = name
        self._noise_rng = np.random.default_rng([self.seed, 0x4015E])
        self._fault_rng = np.random.default_rng([self.seed, 0xFA017])
        self._vl, self._vr = vignetting_maps(params)
        self._closed = False
        self._last_t: float | None = None
        self.frames = 0
        self.faults = 0
        self._depth_m = depth_m
        ys, xs = cell_edges(params.hw)
        centres = grid_rois(params.hw, *GRID)
        self._tiles: list[dict[str, Any]] = []
        for i, (rx, ry, rw, rh) in enumerate(centres):
            r, c = divmod(i, GRID[1])
            y0, y1, x0, x1 = int(ys[r]), int(ys[r + 1]), int(xs[c]), int(xs[c + 1])
            fx, fy = field_xy(rx + rw / 2.0, ry + rh / 2.0, params.hw)
            shapes = {q: (_fast_len(y1 - y0 + 2 * q), _fast_len(x1 - x0 + 2 * q)) for q in PADS}
            self._tiles.append(dict(r=r, c=c, y0=y0, y1=y1, x0=x0, x1=x1, fx=fx, fy=fy, shapes=shapes))
        self.scene: Scene
        self.set_scene(scene, self.seed, depth_m)

    # ------------------------------------------------------------ scene

    def set_scene(self, name: str, seed: int | None = None, depth_m: float | None = None, label: str | None = None) -> str:
        """Put scene ``name`` (see hil_af.sim.scene.SCENES) made from ``seed`` in front of the camera; returns its label."""
        if name not in SCENES:
            raise BadInput(f"unknown sim scene {name!r}; known: {', '.join(SCENES)}")
        seed = self.seed if seed is None else int(seed)
        self.scene = make_scene(name, seed, self._p.hw, PAD_PX, self._p.depth_range_m,
                                depth_m if depth_m is not None else self._depth_m, label=label)
        self._patch_fft: dict[tuple[int, int, str], np.ndarray] = {}
        self._last_render: tuple[float, np.ndarray, np.ndarray] | None = None  # (code, L, R) of this scene
        return self.scene.label

    def _tile_fft(self, i: int, pad: int, layer: str = "card") -> np.ndarray:
        """FFT of cell ``i``'s ``layer`` with a ``pad`` px margin (cached per scene): ``card`` its card's
        texture, ``occ`` its occluder's premultiplied texture, ``mask`` the occluder's coverage."""
        F = self._patch_fft.get((i, pad, layer))
        if F is None:
            t = self._tiles[i]
            o = PAD_PX - pad
            win = (slice(t["y0"] + o, t["y1"] + PAD_PX + pad), slice(t["x0"] + o, t["x1"] + PAD_PX + pad))
            if layer == "card":
                plane = self.scene.textures[self.scene.card_of_cell[t["r"], t["c"]]]
            else:
                j = self._occluder(i)
                planes = self.scene.occ_textures if layer == "occ" else self.scene.occ_masks
                assert planes is not None and j >= 0
                plane = planes[j]
            F = np.fft.rfft2(plane[win], s=t["shapes"][pad])
            self._patch_fft[(i, pad, layer)] = F
        return F

    def _occluder(self, i: int) -> int:
        """Occluder index of cell ``i`` (-1: none)."""
        occ = self.scene.occ_of_cell
        if occ is None:
            return -1
        t = self._tiles[i]
        return int(occ[t["r"], t["c"]])

    # ------------------------------------------------------------ physics

    @property
    def sensor_hw(self) -> tuple[int, int]:
        """(H, W) of the full view plane, pixels."""
        return self._p.hw

    @property
    def params(self) -> SimParams:
        return self._p

    def defocus_dioptres(self, lens_code: float) -> np.ndarray:
        """Signed defocus (scene - lens focus incl. field curvature), dioptres, per cell [3, 4]."""
        lens_d = float(self.lens_map.to_dioptres(lens_code))
        out = np.empty(GRID)
        for t in self._tiles:
            d = self.scene.card_dioptres[self.scene.card_of_cell[t["r"], t["c"]]]
            out[t["r"], t["c"]] = d - (lens_d + curvature_dioptres(self._p, t["fx"], t["fy"]))
        return out

    def render(self, lens_code: float) -> tuple[np.ndarray, np.ndarray]:
        """Noise-free expected signal (DN above black) of the left and right views, float32 [H, W]."""
        L, R = self._render_cached(float(lens_code))
        return L.copy(), R.copy()

    def _render_cached(self, lens_code: float) -> tuple[np.ndarray, np.ndarray]:
        """``render`` reusing the last result when the lens has not moved by 0.001 code or more (repeated
        captures; 0.001 code is ~1e-5 D); read-only arrays."""
        last = self._last_render
        if last is not None and abs(last[0] - lens_code) < 1e-3:
            return last[1], last[2]
        L, R = self._render(lens_code)
        L.flags.writeable = False
        R.flags.writeable = False
        self._last_render = (lens_code, L, R)
        return L, R

    def _render(self, lens_code: float) -> tuple[np.ndarray, np.ndarray]:
        p = self._p
        H, W = p.hw
        L = np.empty((H, W), np.float32)
        R = np.empty((H, W), np.float32)
        defocus = self.defocus_dioptres(lens_code)
        lens_d = float(self.lens_map.to_dioptres(lens_code))
        for i, t in enumerate(self._tiles):
            dz = float(defocus[t["r"], t["c"]])
            disp = float(disparity_px(p, dz, t["fx"], t["fy"]))
            reach = kernel_reach_px(dz, disp, p, PAD_PX - 8)
            j = self._occluder(i)
            if j >= 0:  # an occluder in this cell: its own depth, composited over the card
                assert self.scene.occ_dioptres is not None
                dz_o = float(self.scene.occ_dioptres[j]) - (lens_d + curvature_dioptres(p, t["fx"], t["fy"]))
                disp_o = float(disparity_px(p, dz_o, t["fx"], t["fy"]))
                reach = max(reach, kernel_reach_px(dz_o, disp_o, p, PAD_PX - 8))
            pad = next((q for q in PADS if q >= reach), PAD_PX)
            shape = t["shapes"][pad]
            OL, OR = half_aperture_otfs(dz, disp, p, shape, PAD_PX - 8, t["fx"], t["fy"])
            T = self._tile_fft(i, pad)
            h, w = t["y1"] - t["y0"], t["x1"] - t["x0"]
            views = np.fft.irfft2(np.stack([T * OL, T * OR]), s=shape)[:, pad : pad + h, pad : pad + w]
            if j >= 0:
                QL, QR = half_aperture_otfs(dz_o, disp_o, p, shape, PAD_PX - 8, t["fx"], t["fy"])
                To, M = self._tile_fft(i, pad, "occ"), self._tile_fft(i, pad, "mask")
                fg = np.fft.irfft2(np.stack([To * QL, To * QR, M * QL, M * QR]), s=shape)[:, pad : pad + h, pad : pad + w]
                views = fg[0:2] + (1.0 - fg[2:4]) * views  # blurred foreground over the blurred card
            L[t["y0"] : t["y1"], t["x0"] : t["x1"]] = views[0]
            R[t["y0"] : t["y1"], t["x0"] : t["x1"]] = views[1]
        gain = np.float32(p.exposure_dn * self.scene.illumination)
        L *= self._vl * gain
        R *= self._vr * gain
        return L, R

    def _sensor(self, signal: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Shot + read noise, black level, 10-bit rounding and clipping; returns raw minus black (DN)."""
        p = self._p
        s = np.maximum(signal, 0.0)
        sigma = np.sqrt(s / p.conversion_gain_e_per_dn + p.read_noise_dn**2) * np.float32(self.noise)
        raw = np.clip(np.rint(s + sigma * n + p.black_level), 0, p.white_level)
        return (raw - p.black_level).astype(np.float32)

    # ------------------------------------------------------------ capture

    def capture(self) -> DualPixelFrame:
        """Expose one frame at the lens's actual position now (after waiting for the next frame slot)."""
        if self._closed:
            raise DeviceError("sim camera is closed")
        p = self._p
        now = self._clock.monotonic()
        if self._last_t is not None and now - self._last_t < p.frame_time_s:
            self._clock.sleep(p.frame_time_s - (now - self._last_t))
            now = self._clock.monotonic()
        fault = None
        if self.fault_frame is not None and self._fault_rng.random() < self.fault_p:
            fault = self.fault_frame
            self.faults += 1
        if fault == "timeout":
            self._clock.sleep(TIMEOUT_S)
            self._last_t = self._clock.monotonic()
            raise DeviceTimeout(f"sim camera: no frame within {TIMEOUT_S} s (injected fault_frame=timeout)")
        code = self.lens.actual_position
        if fault is None:
            L, R = self._render_cached(code)
        else:
            level = {"black": 0.0, "saturated": 4.0 * p.white_level, "flat": 0.5 * p.exposure_dn}[fault]
            L, R = self._vl * np.float32(level), self._vr * np.float32(level)
        n = self._noise_rng.standard_normal((2, *p.hw), dtype=np.float32)
        left, right = self._sensor(L, n[0]), self._sensor(R, n[1])
        self._last_t = now
        self.frames += 1
        return DualPixelFrame(
            left, right, lens_position=float(code), timestamp_s=float(now), sensor_hw=p.hw, origin=(0, 0),
            white_level=float(p.white_level - p.black_level),
            metadata={"source": "sim", "black_level": float(p.black_level), "rig": self.name, "scene": self.scene.label, "lens_target": self.lens.position,
                      "exposure_dn": p.exposure_dn * self.scene.illumination, "frame": self.frames, "fault": fault},
        )

    # ------------------------------------------------------------ truth

    def truth_dioptres(self, rois) -> np.ndarray:
        """float64 [P]: lens focus (dioptres) that puts each RoI in focus: the card under the RoI centre,
        minus the field curvature the renderer uses there (that of the cell holding the RoI centre,
        evaluated at the cell's standard-RoI centre; exact for the standard 3 x 4 RoIs)."""
        rois = validate_rois(rois, self._p.hw)
        out = np.empty(len(rois))
        for i, (x, y, w, h) in enumerate(rois):
            cy, cx = y + h / 2.0, x + w / 2.0
            r, c = self.scene.cell_at(cy, cx)
            t = self._tiles[r * GRID[1] + c]
            out[i] = self.scene.dioptres_at(cy, cx) - curvature_dioptres(self._p, t["fx"], t["fy"])
        return out

    def truth_codes(self, rois) -> np.ndarray:
        """float64 [P]: in-focus lens position (DAC codes, actual lens position; may lie outside the range)."""
        return np.asarray(self.lens_map.to_code(self.truth_dioptres(rois)), dtype=np.float64).reshape(-1)

    def close(self) -> None:
        self._closed = True

    def __repr__(self) -> str:
        return f"SimCamera({self.name}, scene={self.scene.label!r}, seed={self.seed})"
