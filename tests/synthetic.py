"""Focal stacks made with plain numpy for controller/eval tests (no simulator needed).

Each RoI holds its own random texture, blurred by a Gaussian whose sigma grows
with |k - gt| (slices); the two views are shifted against each other by
``shift_px_per_slice * (k - gt)`` pixels, so both contrast and disparity
carry the truth.  Written exactly per docs/formats.md.
"""

from __future__ import annotations

import json

import numpy as np


def _blur_rows_cols(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 0.3:
        return img
    r = int(np.ceil(3 * sigma))
    x = np.arange(-r, r + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(img, r, mode="reflect")
    tmp = np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 1, pad)
    return np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 0, tmp)


def make_stack(path, n=13, gts=(3, 6, 9, 11), size=32, seed=0, flat_roi=None, shift_px_per_slice=0.5):
    rng = np.random.default_rng(seed)
    P = len(gts)
    H, W = size + 16, P * (size + 8) + 8
    left = np.zeros((n, H, W), np.float32)
    right = np.zeros_like(left)
    rois = []
    for i, g in enumerate(gts):
        x0 = 8 + i * (size + 8)
        tex = rng.random((size + 16, size + 16)).astype(np.float32) * 800 + 100
        if flat_roi == i:
            tex[:] = 500
        for k in range(n):
            d = k - g
            b = _blur_rows_cols(tex, 0.6 * abs(d))
            s = int(round(shift_px_per_slice * d / 2))
            L = np.roll(b, -s, axis=1)[8:8 + size, 8:8 + size]
            R = np.roll(b, s, axis=1)[8:8 + size, 8:8 + size]
            left[k, 8:8 + size, x0:x0 + size] = L
            right[k, 8:8 + size, x0:x0 + size] = R
        rois.append((x0, 8, size, size))
    meta = {"format": "focal-stack", "version": 1, "black_level": 0, "white_level": 1023, "lens_units": "vcm_code"}
    np.savez(path, left=left, right=right, lens_positions=np.linspace(100, 900, n),
             rois=np.array(rois, np.int32), gt_index=np.array(gts, np.int16),
             sensor_hw=np.array([H, W], np.int32), origin=np.array([0, 0], np.int32), meta=np.array(json.dumps(meta)))
    return path
