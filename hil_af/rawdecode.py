"""Raw sensor buffers -> left/right dual-pixel views (``DualPixelFrame``).

Packings (``fmt``), all rows padded to a ``stride`` that is ignored past the pixels:

- ``RAW10``: MIPI CSI-2 packed 10-bit.  Every 4 pixels take 5 bytes: bytes
  0..3 hold bits 9:2 of pixels 0..3, byte 4 holds their bits 1:0 (pixel 0 in
  bits 1:0, pixel 1 in 3:2, pixel 2 in 5:4, pixel 3 in 7:6).  A row takes
  ``ceil(W / 4) * 5`` bytes; ``stride`` is in bytes.
- ``RAW12``: MIPI CSI-2 packed 12-bit.  Every 2 pixels take 3 bytes: bytes 0, 1
  hold bits 11:4 of pixels 0, 1; byte 2 holds pixel 0's bits 3:0 in bits 3:0
  and pixel 1's in bits 7:4.  A row takes ``ceil(W / 2) * 3`` bytes; ``stride``
  in bytes.
- ``U16``: unpacked 16-bit little-endian (``uint16`` array, or bytes / a
  ``uint8`` array such as Picamera2's raw capture gives); ``stride`` in pixels.
- ``FLOAT``: already-unpacked float pixel values (float32/float64 array),
  which must be finite; ``stride`` in pixels.

The buffer is a bytes-like object or a numpy array, 1-D (``height * stride``
elements) or 2-D ([height, stride]).

Layouts (``layout``) of the two sub-aperture views in the unpacked image:

- ``columns``: column-interleaved L R L R...: left = even columns (W even).
- ``rows``: row-interleaved: left = even rows (H even).
- ``halves``: side by side: left = the left half, right = the right half (W even).
- ``planes``: two planes, left then right, each ``width`` x ``height``: one
  buffer holding both back to back (or an array [2, H, stride]), or a pair
  ``(left_buf, right_buf)``.

For ``columns``/``rows``/``halves``, ``width`` x ``height`` is the whole raw
image and each view is half of it; for ``planes`` it is the size of one view.

Colour filter (``cfa``): a dual-pixel (2PD) sensor's two photodiodes sit
under one colour filter, so the views are split per photosite first and each
view is then a Bayer mosaic of order ``cfa`` (RGGB, GRBG, GBRG, BGGR).  Its
2x2 cells are reduced to one value (``plane``: ``luma``, the cell's mean, a
luminance estimate; ``green``, the mean of its two greens), so the views
have half the split size in each direction.  ``cfa`` None or ``mono``: no
reduction (mono sensors, and the simulator's views).  Splitting a plain
Bayer mosaic's columns (a sensor without dual pixels) gives two different
colour channels, not two views: ``hil_af.drivers.picamera2_source`` refuses
such sensors.
Values are in DN; ``decode_raw`` subtracts ``black_level`` and returns
float32 views with ``white_level - black_level`` as the frame's white level.
Every problem raises ``BadInput`` naming the format/layout and the numbers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import BadInput
from .frames import DualPixelFrame

FORMATS = ("RAW10", "RAW12", "U16", "FLOAT")
LAYOUTS = ("columns", "rows", "halves", "planes")
CFAS = ("RGGB", "GRBG", "GBRG", "BGGR")
PLANES = ("luma", "green")
BITS = {"RAW10": 10, "RAW12": 12, "U16": 16}


def packed_row_bytes(width: int, fmt: str) -> int:
    """Bytes that ``width`` pixels take in one row of ``fmt`` (without padding)."""
    fmt = _fmt(fmt)
    if fmt == "RAW10":
        return -(-width // 4) * 5
    if fmt == "RAW12":
        return -(-width // 2) * 3
    return width * (2 if fmt == "U16" else 1)


def _fmt(fmt: str) -> str:
    f = str(fmt).upper()
    if f not in FORMATS:
        raise BadInput(f"unknown raw format {fmt!r} (known: {', '.join(FORMATS)})")
    return f


def _dims(width: Any, height: Any, what: str) -> tuple[int, int]:
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise BadInput(f"{what}: {name} must be a positive integer, got {v!r}")
    return int(width), int(height)


def _rows_u8(buf: Any, height: int, stride: int | None, min_stride: int, what: str) -> np.ndarray:
    """``buf`` as a uint8 [height, stride] array (a view where possible)."""
    if isinstance(buf, np.ndarray):
        if buf.dtype != np.uint8:
            raise BadInput(f"{what}: expected uint8 bytes, got dtype {buf.dtype}")
        arr = buf
    else:
        try:
            arr = np.frombuffer(memoryview(buf).cast("B"), dtype=np.uint8)
        except TypeError:
            raise BadInput(f"{what}: expected a bytes-like buffer or numpy array, got {type(buf).__name__}") from None
    if arr.ndim == 2:
        if stride is None:
            stride = int(arr.shape[1])
        if arr.shape != (height, stride):
            raise BadInput(f"{what}: expected a [{height}, {stride}] byte array (height, stride), got {list(arr.shape)}")
    elif arr.ndim == 1:
        if stride is None:
            stride = min_stride
        if arr.size != height * stride:
            raise BadInput(f"{what}: expected {height} rows x {stride} bytes = {height * stride} bytes, got {arr.size}")
        arr = arr.reshape(height, stride)
    else:
        raise BadInput(f"{what}: expected a 1-D or 2-D buffer, got {arr.ndim}-D {list(arr.shape)}")
    if stride < min_stride:
        raise BadInput(f"{what}: stride {stride} bytes is less than the packed row of {min_stride} bytes")
    return arr


def _check_stride(stride: Any, what: str) -> int | None:
    if stride is None:
        return None
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride <= 0:
        raise BadInput(f"{what}: stride must be a positive integer, got {stride!r}")
    return int(stride)


def unpack_raw10(buf: Any, width: int, height: int, stride: int | None = None) -> np.ndarray:
    """CSI-2 packed RAW10 -> uint16 [height, width] (0..1023); ``stride`` in bytes per row."""
    what = f"RAW10 {width}x{height}"
    width, height = _dims(width, height, what)
    groups = -(-width // 4)
    rows = _rows_u8(buf, height, _check_stride(stride, what), groups * 5, what)
    g = rows[:, : groups * 5].reshape(height, groups, 5)
    out = np.empty((height, groups, 4), dtype=np.uint16)
    np.left_shift(g[:, :, :4], 2, out=out, dtype=np.uint16)
    lsb = g[:, :, 4]
    for i in range(4):
        out[:, :, i] |= (lsb >> (2 * i)) & 3
    return out.reshape(height, groups * 4)[:, :width]


def unpack_raw12(buf: Any, width: int, height: int, stride: int | None = None) -> np.ndarray:
    """CSI-2 packed RAW12 -> uint16 [height, width] (0..4095); ``stride`` in bytes per row."""
    what = f"RAW12 {width}x{height}"
    width, height = _dims(width, height, what)
    groups = -(-width // 2)
    rows = _rows_u8(buf, height, _check_stride(stride, what), groups * 3, what)
    g = rows[:, : groups * 3].reshape(height, groups, 3)
    out = np.empty((height, groups, 2), dtype=np.uint16)
    np.left_shift(g[:, :, :2], 4, out=out, dtype=np.uint16)
    out[:, :, 0] |= g[:, :, 2] & 0x0F
    out[:, :, 1] |= g[:, :, 2] >> 4
    return out.reshape(height, groups * 2)[:, :width]


def unpack_u16(buf: Any, width: int, height: int, stride: int | None = None) -> np.ndarray:
    """Unpacked little-endian 16-bit -> uint16 [height, width]; ``stride`` in pixels per row."""
    what = f"U16 {width}x{height}"
    width, height = _dims(width, height, what)
    stride = _check_stride(stride, what)
    if isinstance(buf, np.ndarray) and buf.dtype == np.uint16:
        arr = buf
        if arr.ndim == 2:
            if stride is None:
                stride = int(arr.shape[1])
            if arr.shape != (height, stride):
                raise BadInput(f"{what}: expected a [{height}, {stride}] uint16 array (height, stride), got {list(arr.shape)}")
        elif arr.ndim == 1:
            stride = stride or width
            if arr.size != height * stride:
                raise BadInput(f"{what}: expected {height} rows x {stride} pixels = {height * stride} uint16, got {arr.size}")
            arr = arr.reshape(height, stride)
        else:
            raise BadInput(f"{what}: expected a 1-D or 2-D buffer, got {arr.ndim}-D {list(arr.shape)}")
    elif isinstance(buf, np.ndarray) and buf.dtype != np.uint8:
        raise BadInput(f"{what}: expected uint16 (or uint8 bytes), got dtype {buf.dtype}")
    else:
        byte_stride = None if stride is None else 2 * stride
        if isinstance(buf, np.ndarray) and buf.ndim == 2 and byte_stride is None:
            byte_stride = int(buf.shape[1])
            if byte_stride % 2:
                raise BadInput(f"{what}: a uint8 row of {byte_stride} bytes is not a whole number of 16-bit pixels")
        rows = _rows_u8(buf, height, byte_stride, 2 * width, what)
        arr = np.ascontiguousarray(rows[:, : 2 * width]).view("<u2").astype(np.uint16, copy=False)
        stride = width
    if stride < width:
        raise BadInput(f"{what}: stride {stride} pixels is less than the width {width}")
    return arr[:, :width]


def unpack_float(buf: Any, width: int, height: int, stride: int | None = None) -> np.ndarray:
    """Float pixel values -> float32 [height, width]; ``stride`` in pixels; NaN/inf -> BadInput."""
    what = f"FLOAT {width}x{height}"
    width, height = _dims(width, height, what)
    stride = _check_stride(stride, what)
    arr = np.asarray(buf) if isinstance(buf, np.ndarray) else None
    if arr is None or arr.dtype.kind != "f":
        raise BadInput(f"{what}: expected a float32/float64 array, got {getattr(buf, 'dtype', type(buf).__name__)}")
    if arr.ndim == 1:
        stride = stride or width
        if arr.size != height * stride:
            raise BadInput(f"{what}: expected {height} rows x {stride} pixels = {height * stride} values, got {arr.size}")
        arr = arr.reshape(height, stride)
    elif arr.ndim == 2:
        stride = stride or int(arr.shape[1])
        if arr.shape != (height, stride):
            raise BadInput(f"{what}: expected a [{height}, {stride}] array (height, stride), got {list(arr.shape)}")
    else:
        raise BadInput(f"{what}: expected a 1-D or 2-D array, got {arr.ndim}-D {list(arr.shape)}")
    if stride < width:
        raise BadInput(f"{what}: stride {stride} pixels is less than the width {width}")
    out = arr[:, :width].astype(np.float32)
    if not np.isfinite(out).all():
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise BadInput(f"{what}: {bad} pixel value(s) are NaN or infinite")
    return out


_UNPACK = {"RAW10": unpack_raw10, "RAW12": unpack_raw12, "U16": unpack_u16, "FLOAT": unpack_float}


def unpack(buf: Any, width: int, height: int, fmt: str = "RAW10", stride: int | None = None) -> np.ndarray:
    """Unpack one image of ``fmt``: uint16 (float32 for FLOAT) [height, width]."""
    return _UNPACK[_fmt(fmt)](buf, width, height, stride)


def split_views(img: np.ndarray, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) views of an unpacked image [H, W] (``planes``: [2, H, W])."""
    if layout not in LAYOUTS:
        raise BadInput(f"unknown dual-pixel layout {layout!r} (known: {', '.join(LAYOUTS)})")
    if layout == "planes":
        if img.ndim != 3 or img.shape[0] != 2:
            raise BadInput(f"layout 'planes': expected [2, H, W], got {list(img.shape)}")
        return img[0], img[1]
    if img.ndim != 2:
        raise BadInput(f"layout {layout!r}: expected a 2-D image, got {list(img.shape)}")
    H, W = img.shape
    if layout == "columns":
        if W % 2:
            raise BadInput(f"layout 'columns' needs an even width, got {W}")
        return img[:, 0::2], img[:, 1::2]
    if layout == "rows":
        if H % 2:
            raise BadInput(f"layout 'rows' needs an even height, got {H}")
        return img[0::2], img[1::2]
    if W % 2:
        raise BadInput(f"layout 'halves' needs an even width, got {W}")
    return img[:, : W // 2], img[:, W // 2 :]


def cfa_reduce(view: np.ndarray, cfa: str | None, plane: str = "luma") -> np.ndarray:
    """One float32 value per 2x2 cell of a Bayer view [..., H, W] (H, W even): ``luma`` = the cell's
    mean, ``green`` = the mean of its two greens (where they sit depends on ``cfa``).  ``cfa``
    None/mono: the view as float32."""
    if cfa is None or cfa == "mono":
        return view.astype(np.float32)
    if cfa not in CFAS:
        raise BadInput(f"unknown colour filter {cfa!r} (known: {', '.join(CFAS)}, mono)")
    if plane not in PLANES:
        raise BadInput(f"unknown plane {plane!r} (known: {', '.join(PLANES)})")
    H, W = view.shape[-2:]
    if H % 2 or W % 2:
        raise BadInput(f"cfa {cfa}: a Bayer view needs even sides, got {H}x{W}")
    v = view.astype(np.float32)
    if plane == "luma":
        return 0.25 * (v[..., 0::2, 0::2] + v[..., 0::2, 1::2] + v[..., 1::2, 0::2] + v[..., 1::2, 1::2])
    if cfa in ("RGGB", "BGGR"):  # greens on the anti-diagonal of each cell
        return 0.5 * (v[..., 0::2, 1::2] + v[..., 1::2, 0::2])
    return 0.5 * (v[..., 0::2, 0::2] + v[..., 1::2, 1::2])


def _number(v: Any, name: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise BadInput(f"{name} must be a number, got {v!r}") from None
    if not math.isfinite(f):
        raise BadInput(f"{name} must be finite, got {v!r}")
    return f


def decode_raw(
    buf: Any,
    width: int,
    height: int,
    *,
    fmt: str = "RAW10",
    stride: int | None = None,
    layout: str = "columns",
    black_level: float = 0.0,
    white_level: float | None = None,
    sensor_hw: tuple[int, int] | None = None,
    origin: tuple[int, int] = (0, 0),
    lens_position: float = float("nan"),
    timestamp_s: float = 0.0,
    metadata: dict | None = None,
    cfa: str | None = None,
    plane: str = "luma",
) -> DualPixelFrame:
    """Decode one raw buffer into a DualPixelFrame (float32 views, black level subtracted).

    ``width``/``height``: pixels of the raw image (``planes``: of one view).
    ``stride``: bytes per row for RAW10/RAW12, pixels per row for U16/FLOAT.
    ``black_level``/``white_level``: DN; white defaults to 2**bits - 1 (FLOAT: required
    unless the data need none, then the max value).  ``sensor_hw`` defaults to the
    view size, ``origin`` (y0, x0) to (0, 0).  ``cfa``/``plane``: see the module header.
    """
    fmt = _fmt(fmt)
    if layout not in LAYOUTS:
        raise BadInput(f"unknown dual-pixel layout {layout!r} (known: {', '.join(LAYOUTS)})")
    black = _number(black_level, f"{fmt}/{layout}: black_level")
    if black < 0:
        raise BadInput(f"{fmt}/{layout}: black_level must be >= 0, got {black}")
    if layout == "planes" and isinstance(buf, (tuple, list)):
        if len(buf) != 2:
            raise BadInput(f"layout 'planes': expected two buffers (left, right), got {len(buf)}")
        img = np.stack([unpack(b, width, height, fmt, stride) for b in buf])
    elif layout == "planes":
        w, h = _dims(width, height, f"{fmt}/planes")
        if isinstance(buf, np.ndarray) and buf.ndim == 3:
            if buf.shape[0] != 2:
                raise BadInput(f"layout 'planes': expected an array [2, H, stride], got {list(buf.shape)}")
            buf = buf.reshape(2 * buf.shape[1], buf.shape[2])
        img = unpack(buf, w, 2 * h, fmt, stride).reshape(2, h, w)
    else:
        img = unpack(buf, width, height, fmt, stride)
    left, right = split_views(img, layout)
    if white_level is None:
        white = float(2 ** BITS[fmt] - 1) if fmt in BITS else float(max(left.max(), right.max()))
    else:
        white = _number(white_level, f"{fmt}/{layout}: white_level")
    if white <= black:
        hint = " (FLOAT data: pass white_level=)" if white_level is None and fmt == "FLOAT" else ""
        raise BadInput(f"{fmt}/{layout}: white_level {white} must exceed black_level {black}{hint}")
    lf = cfa_reduce(left, cfa, plane)
    rf = cfa_reduce(right, cfa, plane)
    if black:
        lf -= np.float32(black)
        rf -= np.float32(black)
    meta = {"raw_format": fmt, "layout": layout, "black_level": black, "cfa": cfa or "mono"}
    meta.update(metadata or {})
    return DualPixelFrame(left=lf, right=rf, lens_position=float(lens_position), timestamp_s=float(timestamp_s),
                          sensor_hw=sensor_hw, origin=origin, white_level=white - black, metadata=meta)


# --------------------------------------------------------------------------- packers (for fakes, tests, benchmarks)


def pack_raw10(img: np.ndarray, stride: int | None = None) -> np.ndarray:
    """uint16 [H, W] (0..1023) -> CSI-2 RAW10 bytes uint8 [H, stride] (padding zeros)."""
    img = np.asarray(img)
    if img.ndim != 2 or img.dtype.kind not in "ui" or (img.size and (img.min() < 0 or img.max() > 1023)):
        raise BadInput("pack_raw10: expected a 2-D integer image with values 0..1023")
    H, W = img.shape
    groups = -(-W // 4)
    stride = stride or groups * 5
    if stride < groups * 5:
        raise BadInput(f"pack_raw10: stride {stride} < packed row {groups * 5} bytes")
    p = np.zeros((H, groups * 4), dtype=np.uint16)
    p[:, :W] = img
    p = p.reshape(H, groups, 4)
    out = np.zeros((H, stride), dtype=np.uint8)
    g = out[:, : groups * 5].reshape(H, groups, 5)
    g[:, :, :4] = (p >> 2).astype(np.uint8)
    g[:, :, 4] = ((p[:, :, 0] & 3) | ((p[:, :, 1] & 3) << 2) | ((p[:, :, 2] & 3) << 4) | ((p[:, :, 3] & 3) << 6)).astype(np.uint8)
    return out


def pack_raw12(img: np.ndarray, stride: int | None = None) -> np.ndarray:
    """uint16 [H, W] (0..4095) -> CSI-2 RAW12 bytes uint8 [H, stride] (padding zeros)."""
    img = np.asarray(img)
    if img.ndim != 2 or img.dtype.kind not in "ui" or (img.size and (img.min() < 0 or img.max() > 4095)):
        raise BadInput("pack_raw12: expected a 2-D integer image with values 0..4095")
    H, W = img.shape
    groups = -(-W // 2)
    stride = stride or groups * 3
    if stride < groups * 3:
        raise BadInput(f"pack_raw12: stride {stride} < packed row {groups * 3} bytes")
    p = np.zeros((H, groups * 2), dtype=np.uint16)
    p[:, :W] = img
    p = p.reshape(H, groups, 2)
    out = np.zeros((H, stride), dtype=np.uint8)
    g = out[:, : groups * 3].reshape(H, groups, 3)
    g[:, :, :2] = (p >> 4).astype(np.uint8)
    g[:, :, 2] = ((p[:, :, 0] & 0xF) | ((p[:, :, 1] & 0xF) << 4)).astype(np.uint8)
    return out
