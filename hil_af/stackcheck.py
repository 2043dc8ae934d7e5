"""The rule checks of the focal-stack format (docs/formats.md, version 1), shared by the
readers and writers of ``hil_af.stacks``.

Each check raises ``FormatError("<where>: <rule>")`` where ``where`` names the
file (``PATH`` when reading, ``PATH (writing)`` when writing) and the rule
says what the spec requires and what the file has.  Arrays must already be
loaded (numpy, ``allow_pickle=False``); ``meta`` must be parsed
(``parse_meta``).
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np

from .errors import FormatError

KNOWN_VERSIONS = (1,)
VIEW_DTYPES = (np.dtype(np.uint16), np.dtype(np.float32))
MIN_VIEW_SIDE = 8  # H, W >= 8 pixels

# Size limits, checked on the npy headers before any array is read (hil_af.npzread):
MAX_SLICES = 1024  # n, slices per stack
MAX_VIEW_PIXELS = 1 << 24  # H x W of one view, pixels (16.7 M: 4096 x 4096; IMX708 full res is 11.9 M)
MAX_STACK_PIXELS = 1 << 28  # n x H x W of one view of a stack, pixels (268 M: 512 MiB as uint16)
MAX_ROIS = 65536  # P, RoIs per stack
MAX_META_CHARS = 1 << 20  # length of the meta JSON text, characters
_SMALL = {"lens_positions": MAX_SLICES, "rois": 4 * MAX_ROIS, "gt_index": MAX_ROIS, "sensor_hw": 64, "origin": 64}

def fail(where: str, rule: str) -> FormatError:
    return FormatError(f"{where}: {rule}")


def check_headers(headers: Mapping[str, tuple[tuple[int, ...], np.dtype]], ndim: int, where: str) -> None:
    """Refuse a stack (``ndim`` 3) or frame (2) file from its npy headers alone: sizes over the limits above."""
    for key in ("left", "right"):
        if key not in headers:
            continue
        shape, dtype = headers[key]
        if len(shape) != ndim:
            desc = "[n, H, W]" if ndim == 3 else "[H, W]"
            raise fail(where, f"'{key}' must have shape {desc}, got {shape}")
        if dtype.kind not in "uif" or dtype.itemsize > 8:
            raise fail(where, f"'{key}' must be uint16 or float32, got dtype {dtype}")
        H, W = shape[-2], shape[-1]
        if H * W > MAX_VIEW_PIXELS:
            raise fail(where, f"'{key}' views of {H}x{W} = {H * W} pixels exceed the limit of {MAX_VIEW_PIXELS} pixels per view")
        if ndim == 3:
            n = shape[0]
            if n > MAX_SLICES:
                raise fail(where, f"'{key}' has {n} slices: more than the limit of {MAX_SLICES}")
            if n * H * W > MAX_STACK_PIXELS:
                raise fail(where, f"'{key}' holds n x H x W = {n}x{H}x{W} = {n * H * W} pixels: more than the limit of {MAX_STACK_PIXELS}")
    for key, limit in _SMALL.items():
        if key in headers:
            numel = math.prod(headers[key][0])
            if numel > limit:
                raise fail(where, f"'{key}' has {numel} values, more than the limit of {limit} ({headers[key][1]} {list(headers[key][0])})")
    if "meta" in headers:
        shape, dtype = headers["meta"]
        chars = dtype.itemsize // (4 if dtype.kind == "U" else 1) if dtype.kind in "US" else 0
        if shape != () or dtype.kind not in "US":
            raise fail(where, f"'meta' must be a 0-d str array holding a JSON object, got dtype {dtype} shape {shape}")
        if chars > MAX_META_CHARS:
            raise fail(where, f"'meta' is {chars} characters long: more than the limit of {MAX_META_CHARS}")


def _need_dtype(arrays: Mapping[str, np.ndarray], key: str, dtype: Any, shape_desc: str, ndim: int, where: str) -> np.ndarray:
    a = arrays[key]
    if a.dtype != np.dtype(dtype):
        raise fail(where, f"'{key}' must be {np.dtype(dtype).name} {shape_desc}, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise fail(where, f"'{key}' must have shape {shape_desc}, got {a.shape}")
    return a


def parse_meta(raw: np.ndarray, where: str) -> dict[str, Any]:
    if raw.ndim != 0 or raw.dtype.kind not in "US":
        raise fail(where, f"'meta' must be a 0-d str array holding a JSON object, got dtype {raw.dtype} shape {raw.shape}")
    text = raw.item()
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise fail(where, "'meta' is not UTF-8 text") from None
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, ints over 4300 digits, deep nesting
        why = "nested too deeply" if isinstance(e, RecursionError) else " ".join(str(e).split())[:200]
        raise fail(where, f"'meta' does not parse as JSON: {why}") from None
    if not isinstance(meta, dict):
        raise fail(where, f"'meta' must be a JSON object, got {type(meta).__name__}")
    return meta


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_meta(meta: Mapping[str, Any], fmt: str, where: str, n: int | None) -> None:
    if meta.get("format") != fmt:
        raise fail(where, f"meta 'format' must be {fmt!r}, got {meta.get('format')!r}")
    version = meta.get("version")
    if isinstance(version, bool) or version not in KNOWN_VERSIONS:
        raise fail(where, f"meta 'version' {version!r} is not a known version (known: {list(KNOWN_VERSIONS)})")
    for key in ("black_level", "white_level"):
        if key not in meta:
            raise fail(where, f"meta lacks required key {key!r}")
        if not is_number(meta[key]):
            raise fail(where, f"meta {key!r} must be a finite number, got {meta[key]!r}")
    if not meta["white_level"] > meta["black_level"]:
        raise fail(where, f"meta white_level {meta['white_level']} must exceed black_level {meta['black_level']}")
    for key in ("source", "scene", "rig"):
        if key in meta and not isinstance(meta[key], str):
            raise fail(where, f"meta {key!r} must be a string, got {meta[key]!r}")
    if fmt == "focal-stack":
        if not isinstance(meta.get("lens_units"), str) or not meta["lens_units"]:
            raise fail(where, f"meta 'lens_units' must be a non-empty string, got {meta.get('lens_units')!r}")
        if "lens_dioptres" in meta:
            d = meta["lens_dioptres"]
            if not isinstance(d, list) or len(d) != n or not all(is_number(v) for v in d):
                raise fail(where, f"meta 'lens_dioptres' must be a list of {n} finite numbers (one per slice)")
    else:
        lp = meta.get("lens_position")
        if lp is not None and not is_number(lp):
            raise fail(where, f"meta 'lens_position' must be a finite number, got {lp!r}")


def check_views(left: np.ndarray, right: np.ndarray, ndim: int, where: str) -> None:
    shape_desc = "[n, H, W]" if ndim == 3 else "[H, W]"
    for key, a in (("left", left), ("right", right)):
        if a.dtype not in VIEW_DTYPES:
            raise fail(where, f"'{key}' must be uint16 or float32 {shape_desc}, got dtype {a.dtype}")
        if a.ndim != ndim:
            raise fail(where, f"'{key}' must have shape {shape_desc}, got {a.shape}")
    if left.dtype != right.dtype or left.shape != right.shape:
        raise fail(where, f"'left' and 'right' must have the same dtype and shape, got {left.dtype} {left.shape} vs {right.dtype} {right.shape}")
    if ndim == 3 and left.shape[0] < 2:
        raise fail(where, f"a focal stack needs n >= 2 slices, got {left.shape[0]}")
    if left.shape[-2] < MIN_VIEW_SIDE or left.shape[-1] < MIN_VIEW_SIDE:
        raise fail(where, f"views must be at least {MIN_VIEW_SIDE} x {MIN_VIEW_SIDE} (H, W >= 8), got H={left.shape[-2]} W={left.shape[-1]}")
    if left.dtype.kind == "f" and not (np.isfinite(left).all() and np.isfinite(right).all()):
        raise fail(where, "float32 views must be finite (no NaN or inf)")


def check_placement(sensor_hw: np.ndarray, origin: np.ndarray, view_hw: tuple[int, int], where: str) -> None:
    for key, a in (("sensor_hw", sensor_hw), ("origin", origin)):
        if a.dtype != np.int32 or a.shape != (2,):
            raise fail(where, f"'{key}' must be int32 [2], got {a.dtype} {a.shape}")
    H_full, W_full = int(sensor_hw[0]), int(sensor_hw[1])
    y0, x0 = int(origin[0]), int(origin[1])
    H, W = view_hw
    if H_full <= 0 or W_full <= 0:
        raise fail(where, f"'sensor_hw' must be positive, got {(H_full, W_full)}")
    if y0 < 0 or x0 < 0 or y0 + H > H_full or x0 + W > W_full:
        raise fail(where, f"origin + (H, W) must lie inside sensor_hw: origin {(y0, x0)} + {(H, W)} does not fit in {(H_full, W_full)}")


def check_stack(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], where: str) -> None:
    left, right = arrays["left"], arrays["right"]
    check_views(left, right, 3, where)
    n, H, W = (int(s) for s in left.shape)
    lp = _need_dtype(arrays, "lens_positions", np.float64, "[n]", 1, where)
    if lp.shape != (n,):
        raise fail(where, f"'lens_positions' must have shape [n] = ({n},), got {lp.shape}")
    if not np.isfinite(lp).all():
        raise fail(where, "'lens_positions' must be finite")
    if not (np.diff(lp) > 0).all():
        raise fail(where, f"'lens_positions' must be strictly increasing, got {lp.tolist()[:8]}{'...' if n > 8 else ''}")
    rois = _need_dtype(arrays, "rois", np.int32, "[P, 4]", 2, where)
    if rois.shape[1] != 4:
        raise fail(where, f"'rois' must have shape [P, 4], got {rois.shape}")
    x, y, w, h = (rois[:, i].astype(np.int64) for i in range(4))
    bad = np.flatnonzero((w <= 0) | (h <= 0) | (x < 0) | (y < 0) | (x + w > W) | (y + h > H))
    if bad.size:
        i = int(bad[0])
        raise fail(where, f"every RoI must lie inside the {W}x{H} views: rois[{i}] = {rois[i].tolist()} (x, y, w, h) does not")
    gt = _need_dtype(arrays, "gt_index", np.int16, "[P]", 1, where)
    if gt.shape != (rois.shape[0],):
        raise fail(where, f"'gt_index' must have shape [P] = ({rois.shape[0]},), got {gt.shape}")
    bad = np.flatnonzero((gt != -1) & ((gt < 0) | (gt >= n)))
    if bad.size:
        i = int(bad[0])
        raise fail(where, f"gt_index must be -1 or in [0, {n}): gt_index[{i}] = {int(gt[i])}")
    check_placement(arrays["sensor_hw"], arrays["origin"], (H, W), where)
    check_meta(meta, "focal-stack", where, n)
