"""Decode only what the RoIs need from a raw frame: the per-frame budget of an AF step.

A 12 MP RAW10 frame takes tens of milliseconds to unpack whole (and several
times that on a Pi 4's Cortex-A72), yet an AF step reads a dozen small RoIs.
``decode_rois`` maps each RoI (x, y, w, h in *view* pixels, as
``hil_af.pdaf.crop_patches`` takes them) back to the raw rectangle(s) that
hold it, unpacks only those bytes and returns the same left/right patches a
whole-frame ``hil_af.rawdecode.decode_raw`` followed by ``crop_patches``
would (tested equal for every layout, packing and colour filter).

Raw rectangles per RoI (``k`` = 2 with a colour filter, each view pixel then
being a 2x2 Bayer cell, else 1):

- ``columns``: rows ``k*y .. k*(y+h)``, raw columns ``2*k*x .. 2*k*(x+w)`` (both views)
- ``rows``: rows ``2*k*y .. 2*k*(y+h)``, columns ``k*x .. k*(x+w)``
- ``halves``: the left view's ``k*x ..`` and, ``width/2`` further right, the right view's
- ``planes``: the same rectangle in each plane (the second one ``height`` rows down)

RAW10 rectangles are widened to whole 4-pixel (5-byte) groups and RAW12 to
2-pixel (3-byte) groups, gathered into one array and unpacked in one call.  Units: pixels; values DN with the
black level subtracted, float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import BadInput
from .rawdecode import LAYOUTS, _rows_u8, cfa_reduce, packed_row_bytes, unpack

_GROUP = {"RAW10": (4, 5), "RAW12": (2, 3)}   # pixels, bytes per packing group


def unpack_rects(rows: np.ndarray, fmt: str, rects: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Pixels [P, h, w] of equal-size rectangles (y0, y1, x0, x1) of a raw image given as its rows:
    bytes [H, stride] (RAW10/RAW12, or U16 little-endian) or a uint16 [H, stride] array.  The packed
    byte groups covering each rectangle are gathered and unpacked in one call (the result may be a
    view of that unpacked array: never of ``rows``)."""
    P = len(rects)
    h, w = rects[0][1] - rects[0][0], rects[0][3] - rects[0][2]
    if fmt in _GROUP:
        gp, gb = _GROUP[fmt]
        n = -(-(w + gp - 1) // gp)                    # groups enough for any alignment of x0
        last = rows.shape[1] // gb - n
        blocks = np.empty((P, h, n * gb), np.uint8)
        starts = []
        for i, (y0, y1, x0, _) in enumerate(rects):
            g0 = max(0, min(x0 // gp, last))
            blocks[i] = rows[y0:y1, g0 * gb:(g0 + n) * gb]
            starts.append(x0 - g0 * gp)
        img = unpack(blocks.reshape(P * h, n * gb), n * gp, P * h, fmt).reshape(P, h, n * gp)
        if len(set(starts)) == 1:  # every rectangle at the same place in its groups: a view, no copy
            return img[:, :, starts[0]:starts[0] + w]
        return np.stack([img[i, :, s:s + w] for i, s in enumerate(starts)])
    if rows.dtype == np.uint8:  # U16 as little-endian bytes
        out = np.stack([rows[y0:y1, 2 * x0:2 * x1] for y0, y1, x0, x1 in rects])
        return np.ascontiguousarray(out).view("<u2").astype(np.uint16, copy=False)
    return np.stack([rows[y0:y1, x0:x1] for y0, y1, x0, x1 in rects])


def _rects(roi: np.ndarray, layout: str, k: int, width: int, height: int) -> list[tuple[int, int, int, int]]:
    x, y, w, h = (int(v) for v in roi)
    if layout == "columns":
        return [(k * y, k * (y + h), 2 * k * x, 2 * k * (x + w))]
    if layout == "rows":
        return [(2 * k * y, 2 * k * (y + h), k * x, k * (x + w))]
    if layout == "halves":
        half = width // 2
        return [(k * y, k * (y + h), k * x, k * (x + w)), (k * y, k * (y + h), half + k * x, half + k * (x + w))]
    return [(k * y, k * (y + h), k * x, k * (x + w)), (height + k * y, height + k * (y + h), k * x, k * (x + w))]


def decode_rois(buf: Any, width: int, height: int, rois: Any, *, fmt: str = "RAW10", stride: int | None = None,
                layout: str = "columns", cfa: str | None = None, plane: str = "luma",
                black_level: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Left and right patches [P, h, w] float32 (black subtracted) of the RoIs (x, y, w, h; view pixels,
    all one size) of one raw frame.  Arguments as ``hil_af.rawdecode.decode_raw``: ``width`` x
    ``height`` is the raw image (``planes``: one view); ``stride`` bytes (RAW10/12) or pixels (U16)."""
    fmt = str(fmt).upper()
    if layout not in LAYOUTS:
        raise BadInput(f"unknown dual-pixel layout {layout!r} (known: {', '.join(LAYOUTS)})")
    if fmt not in ("RAW10", "RAW12", "U16"):
        raise BadInput(f"decode_rois: format {fmt!r} is not a raw packing (RAW10, RAW12, U16)")
    rois = np.asarray(rois, dtype=np.int64).reshape(-1, 4)
    if len({(int(r[2]), int(r[3])) for r in rois}) > 1:
        raise BadInput("decode_rois needs RoIs of one size")
    k = 1 if cfa in (None, "mono") else 2
    H = 2 * height if layout == "planes" else height
    vh, vw = {"columns": (height, width // 2), "rows": (height // 2, width), "halves": (height, width // 2),
              "planes": (height, width)}[layout]
    vh, vw = vh // k, vw // k
    for x, y, w, h in rois:
        if x < 0 or y < 0 or w < 1 or h < 1 or x + w > vw or y + h > vh:
            raise BadInput(f"RoI ({x}, {y}, {w}, {h}) is outside the {vw}x{vh} views")
    if fmt == "U16" and isinstance(buf, np.ndarray) and buf.dtype == np.uint16:
        rows = buf.reshape(H, -1) if buf.ndim == 1 else buf
    else:
        byte_stride = stride * 2 if (fmt == "U16" and stride) else stride
        rows = _rows_u8(buf, H, byte_stride, packed_row_bytes(width, fmt), f"{fmt} {width}x{H}")
    rects = [_rects(roi, layout, k, width, height) for roi in rois]
    if layout in ("columns", "rows"):
        img = unpack_rects(rows, fmt, [r[0] for r in rects])
        left, right = (img[..., 0::2], img[..., 1::2]) if layout == "columns" else (img[:, 0::2], img[:, 1::2])
    else:
        left, right = unpack_rects(rows, fmt, [r[0] for r in rects]), unpack_rects(rows, fmt, [r[1] for r in rects])
    L, R = cfa_reduce(left, cfa, plane), cfa_reduce(right, cfa, plane)
    if black_level:
        L -= np.float32(black_level)
        R -= np.float32(black_level)
    return L, R
