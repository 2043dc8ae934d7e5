"""Focal-stack and frame files (docs/formats.md, version 1).

A focal stack is one ``.npz`` holding one lens sweep of one static scene:
``left``/``right`` [n, H, W] raw views (uint16 or float32, black level NOT
subtracted), ``lens_positions`` float64 [n] (native lens units, strictly
increasing), ``rois`` int32 [P, 4] (x, y, w, h view pixels), ``gt_index``
int16 [P] (in-focus slice per RoI, -1 unknown), ``sensor_hw`` and ``origin``
int32 [2] (pixels), and ``meta`` (a JSON object in a 0-d str array).
A frame file holds one capture: ``left``/``right`` [H, W] plus optional
``sensor_hw``/``origin`` and ``meta`` with ``"format": "frame"``.

Readers load with ``allow_pickle=False`` and enforce every rule of the spec;
any violation (missing key, wrong dtype or shape, bad values, a truncated or
corrupt zip) raises ``FormatError`` whose message names the file and the
rule.  Writers validate first, then write atomically (temp file + rename),
so a reader never sees half a file.  Unknown ``meta`` keys are kept.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .atomic import atomic_open
from .errors import BadInput, FormatError
from .frames import DualPixelFrame
from .npzread import read_npz
from .stackcheck import KNOWN_VERSIONS, MIN_VIEW_SIDE  # noqa: F401  (re-exported)
from .stackcheck import VIEW_DTYPES, check_headers, check_meta, check_placement, check_stack, check_views, fail, is_number, parse_meta

STACK_KEYS = ("left", "right", "lens_positions", "rois", "gt_index", "sensor_hw", "origin", "meta")
FRAME_KEYS = ("left", "right", "meta")


# --------------------------------------------------------------------------- data types


@dataclass
class FocalStack:
    """One lens sweep as stored: raw views [n, H, W] in their stored dtype.

    left, right: uint16 or float32 [n, H, W], raw DN (black level not subtracted).
    lens_positions: float64 [n], native lens units, strictly increasing.
    rois: int32 [P, 4] (x, y, w, h) in view pixels.
    gt_index: int16 [P], in-focus slice per RoI, -1 where unknown.
    sensor_hw: (H_full, W_full) of the full view plane, pixels.
    origin: (y0, x0) of view pixel (0, 0) on the full view plane, pixels.
    meta: the JSON object (format, version, black_level, white_level, lens_units, ...).
    path: the file it was read from (None for an in-memory stack).
    """

    left: np.ndarray
    right: np.ndarray
    lens_positions: np.ndarray
    rois: np.ndarray
    gt_index: np.ndarray
    sensor_hw: tuple[int, int]
    origin: tuple[int, int] = (0, 0)
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        self.sensor_hw = (int(self.sensor_hw[0]), int(self.sensor_hw[1]))
        self.origin = (int(self.origin[0]), int(self.origin[1]))
        self.meta = dict(self.meta)

    @property
    def n(self) -> int:
        """Number of focal slices."""
        return int(self.left.shape[0])

    @property
    def view_hw(self) -> tuple[int, int]:
        """(H, W) of each view, pixels."""
        return (int(self.left.shape[1]), int(self.left.shape[2]))

    @property
    def black_level(self) -> float:
        """Black level of the stored views, DN."""
        return float(self.meta.get("black_level", 0.0))

    @property
    def white_level(self) -> float:
        """Saturation level of the stored views (before black subtraction), DN."""
        return float(self.meta.get("white_level", float("nan")))

    def frame(self, k: int) -> DualPixelFrame:
        """Slice ``k`` as a DualPixelFrame: float32, black level subtracted."""
        if not -self.n <= k < self.n:
            raise BadInput(f"slice index {k} is outside the stack's {self.n} slices")
        k = k % self.n
        black = self.black_level
        left = self.left[k].astype(np.float32) - np.float32(black)
        right = self.right[k].astype(np.float32) - np.float32(black)
        return DualPixelFrame(
            left=left,
            right=right,
            lens_position=float(self.lens_positions[k]),
            sensor_hw=self.sensor_hw,
            origin=self.origin,
            white_level=self.white_level - black,
            metadata={"slice": k, "stack": str(self.path) if self.path else None},
        )

    def dioptres(self) -> np.ndarray | None:
        """Focus of each slice in dioptres (1/m) from meta ``lens_dioptres``, or None."""
        d = self.meta.get("lens_dioptres")
        return None if d is None else np.asarray(d, dtype=np.float64)

    def nearest_slice(self, position: float) -> int:
        """Index of the slice whose lens position is nearest ``position`` (native units)."""
        return int(np.argmin(np.abs(np.asarray(self.lens_positions, dtype=np.float64) - float(position))))

    def validate(self, where: str = "<in-memory stack>") -> None:
        """Raise FormatError naming ``where`` and the rule if this stack breaks the spec."""
        arrays, meta = _stack_arrays(self, where)
        check_stack(arrays, meta, where)


# --------------------------------------------------------------------------- reading


def _open_npz(path: Path, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Every array of ``keys`` (required) and ``optional`` from the npz at ``path``, read safely
    (``hil_af.npzread``: regular files only, sizes checked on the headers first); FormatError if not."""
    ndim = 3 if "lens_positions" in keys else 2
    return read_npz(path, keys, optional, what="focal stack" if ndim == 3 else "frame file",
                    check=lambda headers: check_headers(headers, ndim, str(path)))


def load_stack(path: str | os.PathLike) -> FocalStack:
    """Read and validate a focal stack file; FormatError naming the file and the rule."""
    p = Path(path)
    arrays = _open_npz(p, STACK_KEYS)
    where = str(p)
    meta = parse_meta(arrays["meta"], where)
    check_stack(arrays, meta, where)
    return FocalStack(
        left=arrays["left"],
        right=arrays["right"],
        lens_positions=arrays["lens_positions"],
        rois=arrays["rois"],
        gt_index=arrays["gt_index"],
        sensor_hw=tuple(int(v) for v in arrays["sensor_hw"]),  # type: ignore[arg-type]
        origin=tuple(int(v) for v in arrays["origin"]),  # type: ignore[arg-type]
        meta=meta,
        path=p,
    )


def read_frame_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict[str, Any], tuple[int, int], tuple[int, int]]:
    """The raw content of a frame file: (left, right, meta, sensor_hw, origin), validated."""
    p = Path(path)
    where = str(p)
    arrays = _open_npz(p, FRAME_KEYS, ("sensor_hw", "origin"))
    meta = parse_meta(arrays["meta"], where)
    left, right = arrays["left"], arrays["right"]
    check_views(left, right, 2, where)
    H, W = (int(s) for s in left.shape)
    shw = arrays.get("sensor_hw", np.array([H, W], dtype=np.int32))
    org = arrays.get("origin", np.array([0, 0], dtype=np.int32))
    check_placement(shw, org, (H, W), where)
    check_meta(meta, "frame", where, None)
    return left, right, meta, (int(shw[0]), int(shw[1])), (int(org[0]), int(org[1]))


def load_frame(path: str | os.PathLike) -> DualPixelFrame:
    """Read a frame file as a DualPixelFrame (float32, black level subtracted)."""
    left, right, meta, shw, org = read_frame_file(path)
    black = float(meta["black_level"])
    return DualPixelFrame(
        left=left.astype(np.float32) - np.float32(black),
        right=right.astype(np.float32) - np.float32(black),
        lens_position=float(meta.get("lens_position", float("nan"))),
        sensor_hw=shw,
        origin=org,
        white_level=float(meta["white_level"]) - black,
        metadata={**meta, "path": str(path)},
    )


# --------------------------------------------------------------------------- writing


def _as_views(a: Any, name: str, where: str) -> np.ndarray:
    """Views in a stored dtype: uint16 kept, integer data that fits cast to uint16, floats to float32."""
    arr = np.asarray(a)
    if arr.dtype in VIEW_DTYPES:
        return arr
    if arr.dtype.kind in "iub":
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise fail(where, f"'{name}': integer views must fit uint16 (0..65535), got {arr.min()}..{arr.max()}")
        return arr.astype(np.uint16)
    if arr.dtype.kind == "f":
        return arr.astype(np.float32)
    raise fail(where, f"'{name}' must be uint16 or float32 views, got dtype {arr.dtype}")


def _as_int(a: Any, dtype: Any, name: str, where: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not (arr == np.round(arr)).all():
            raise fail(where, f"'{name}' must hold integers")
    elif arr.dtype.kind not in "iub":
        raise fail(where, f"'{name}' must hold integers, got dtype {arr.dtype}")
    info = np.iinfo(dtype)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        raise fail(where, f"'{name}' values do not fit {np.dtype(dtype).name}")
    return arr.astype(dtype)


def _stack_arrays(stack: FocalStack, where: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    meta = dict(stack.meta)
    meta.setdefault("format", "focal-stack")
    meta.setdefault("version", 1)
    lp = np.asarray(stack.lens_positions)
    if lp.dtype.kind not in "iuf":
        raise fail(where, f"'lens_positions' must be numbers, got dtype {lp.dtype}")
    rois = _as_int(stack.rois, np.int32, "rois", where)
    if rois.size == 0:
        rois = rois.reshape(0, 4)
    arrays = {
        "left": _as_views(stack.left, "left", where),
        "right": _as_views(stack.right, "right", where),
        "lens_positions": lp.astype(np.float64),
        "rois": rois,
        "gt_index": _as_int(stack.gt_index, np.int16, "gt_index", where),
        "sensor_hw": _as_int(stack.sensor_hw, np.int32, "sensor_hw", where),
        "origin": _as_int(stack.origin, np.int32, "origin", where),
    }
    return arrays, meta


def _meta_json(meta: Mapping[str, Any], where: str) -> np.ndarray:
    try:
        text = json.dumps(meta, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as e:
        raise fail(where, f"meta is not JSON-serialisable: {e}") from None
    return np.array(text)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray], compressed: bool) -> None:
    with atomic_open(path, "wb") as f:
        if compressed:
            np.savez_compressed(f, **arrays)  # type: ignore[arg-type]
        else:
            np.savez(f, **arrays)  # type: ignore[arg-type]


def save_stack(path: str | os.PathLike, stack: FocalStack, compressed: bool = True) -> Path:
    """Validate ``stack`` and write it atomically to ``path`` (.npz); returns the path.

    Views keep their dtype when uint16/float32; other integer views are cast to
    uint16 (BadInput if they do not fit), other floats to float32.  ``format``
    and ``version`` are filled into meta when absent; other meta keys are kept.
    """
    p = Path(path)
    where = f"{p} (writing)"
    arrays, meta = _stack_arrays(stack, where)
    # round-trip meta through JSON so the checks see exactly what a reader will
    meta_arr = _meta_json(meta, where)
    meta = json.loads(str(meta_arr))
    check_stack(arrays, meta, where)
    _write_npz(p, {**arrays, "meta": meta_arr}, compressed)
    return p


def save_frame(
    path: str | os.PathLike,
    frame: DualPixelFrame,
    black_level: float = 0.0,
    white_level: float | None = None,
    *,
    dtype: str | None = None,
    lens_position: float | None = None,
    source: str | None = None,
    extra_meta: Mapping[str, Any] | None = None,
    compressed: bool = True,
) -> Path:
    """Write ``frame`` (black-subtracted float32) as a frame file with raw values.

    Stored values are ``frame + black_level`` (DN).  ``white_level`` defaults to
    ``frame.white_level + black_level``.  ``dtype`` "uint16" or "float32"; by
    default uint16 when every stored value is an integer in 0..65535, else float32.
    """
    p = Path(path)
    where = f"{p} (writing)"
    if not is_number(black_level):
        raise BadInput(f"{where}: black_level must be a finite number, got {black_level!r}")
    if white_level is None:
        if frame.white_level is None:
            raise BadInput(f"{where}: white_level unknown: pass white_level= (the frame has none)")
        white_level = float(frame.white_level) + float(black_level)
    left = frame.left.astype(np.float64) + float(black_level)
    right = frame.right.astype(np.float64) + float(black_level)
    if dtype is None:
        ints = all(np.isfinite(a).all() and (a == np.round(a)).all() and a.min() >= 0 and a.max() <= 65535 for a in (left, right))
        dtype = "uint16" if ints else "float32"
    if dtype not in ("uint16", "float32"):
        raise BadInput(f"{where}: dtype must be 'uint16' or 'float32', got {dtype!r}")
    if dtype == "uint16":
        lv, rv = _as_int(left, np.uint16, "left", where), _as_int(right, np.uint16, "right", where)
    else:
        lv, rv = left.astype(np.float32), right.astype(np.float32)
    lp = frame.lens_position if lens_position is None else lens_position
    meta: dict[str, Any] = {"format": "frame", "version": 1, "black_level": float(black_level), "white_level": float(white_level)}
    if lp is not None and math.isfinite(float(lp)):
        meta["lens_position"] = float(lp)
    if source is not None:
        meta["source"] = source
    if extra_meta:
        meta = {**dict(extra_meta), **meta}
    meta_arr = _meta_json(meta, where)
    meta = json.loads(str(meta_arr))
    check_views(lv, rv, 2, where)
    shw = np.asarray(frame.sensor_hw, dtype=np.int32)
    org = np.asarray(frame.origin, dtype=np.int32)
    check_placement(shw, org, frame.shape, where)
    check_meta(meta, "frame", where, None)
    _write_npz(p, {"left": lv, "right": rv, "sensor_hw": shw, "origin": org, "meta": meta_arr}, compressed)
    return p


def stack_files(path: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """The focal stacks a ``--stacks`` argument names: the file itself, or the ``*.npz``
    files in the folder (below it with ``recursive``), sorted, temp files (``.*``) left out.
    BadInput when there is no such path or no stack in it."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise BadInput(f"--stacks {p}: no such file or folder")
    files = sorted(q for q in (p.rglob("*.npz") if recursive else p.glob("*.npz"))
                   if q.is_file() and not q.name.startswith("."))
    if not files:
        raise BadInput(f"--stacks {p}: holds no focal stacks (*.npz)")
    return files
