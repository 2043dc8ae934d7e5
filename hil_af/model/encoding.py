"""The five-channel input encoding of the position-encoded AF model (numpy only).

One RoI patch of one dual-pixel frame becomes a float32 tensor [5, S, S]
(S = ``EncodingConfig.size``, 64 by default):

0. left view, normalised (see below)
1. right view, normalised
2. RoI-PE x: for every patch pixel, its x on the FULL sensor view plane,
   ``2 * (x0 + x + 0.5) / W_full - 1`` in [-1, 1] (docs/formats.md),
   where x0 is the frame's origin x plus the RoI's x; a cropped frame still
   encodes true sensor positions.
3. RoI-PE y: ``2 * (y0 + y + 0.5) / H_full - 1``.
4. lens-PE: ``k / (n - 1)`` for slice k of n, broadcast as a plane.

With ``roi_pe=False`` (``lens_pe=False``) channels 2-3 (4) are zero planes:
the tensor keeps five channels so that an ablation model has the same
architecture and cost as the full one.

Normalisation of the two views (``norm="view-mean"``): each view is first
divided by its own mean over the patch (this undoes the per-view gain, i.e.
the vignetting that differs between the left and the right half-aperture,
at first order), then both are centred (minus 1) and divided by ONE common
standard deviation of the two centred views together (so the relative
contrast of left and right is kept).  An optional flat-field callable is
applied to the raw patches first (``flatfield(left, right, roi_full_xywh,
sensor_hw) -> (left, right)``).

RoI size -> model input size (``fit``):
- ``"crop"`` (default): a dimension larger than S is centre-cropped to S
  (this keeps the disparity in pixels, which is what the model reads); a
  dimension smaller than S is first grown about the RoI's centre to S px of
  the view (``model_windows``: the window is shifted to stay inside the view),
  so a 112 px model reads a 64 px RoI at its own pixel scale; only a view
  smaller than S leaves a dimension to be area-resampled up to S.
- ``"area"``: the RoI is area-resampled (exact box filter with fractional
  pixel overlaps, separable) to S x S in both dimensions; note that this
  scales the disparity by S / size.
The PE planes are always computed analytically at the centres of the
output cells on the full plane (for a crop: the pixel centres exactly; for
area resampling: the cell centres, which is the box average of the
continuous coordinate ramp; the box average of the pixel-centre values
differs from it by < 1/4 input pixel when the scale is not an integer).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from ..errors import BadInput

N_CHANNELS = 5
FlatField = Callable[[np.ndarray, np.ndarray, tuple[int, int, int, int], tuple[int, int]], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class EncodingConfig:
    """What the model's input means; stored in card.json and read back by inference."""

    size: int = 64
    roi_pe: bool = True
    lens_pe: bool = True
    fit: str = "crop"  # "crop" | "area"
    norm: str = "view-mean"
    eps: float = 1e-3

    def __post_init__(self) -> None:
        if self.fit not in ("crop", "area"):
            raise BadInput(f"encoding fit must be 'crop' or 'area', got {self.fit!r}")
        if self.norm != "view-mean":
            raise BadInput(f"encoding norm must be 'view-mean', got {self.norm!r}")
        if int(self.size) < 8:
            raise BadInput(f"encoding size must be >= 8, got {self.size}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = ["left", "right", "roi_pe_x", "roi_pe_y", "lens_pe"]
        d["dropped_channels"] = "zero planes (5 channels kept)"
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EncodingConfig":
        keys = ("size", "roi_pe", "lens_pe", "fit", "norm", "eps")
        missing = [k for k in ("size", "roi_pe", "lens_pe") if k not in d]
        if missing:
            raise BadInput(f"encoding config lacks {', '.join(missing)}")
        return cls(**{k: d[k] for k in keys if k in d})


def resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Area (box-filter) resampling weights float64 [n_out, n_in]; rows sum to 1.

    Output cell i covers input coordinates [i*n_in/n_out, (i+1)*n_in/n_out);
    its weight on input pixel j is the overlap with [j, j+1) divided by the
    cell length.
    """
    if n_in < 1 or n_out < 1:
        raise BadInput(f"resample sizes must be >= 1, got {n_in} -> {n_out}")
    edges = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
    return overlap / (n_in / n_out)


def _fit_axis(start: int, length: int, size: int, fit: str) -> tuple[int, int, np.ndarray | None, np.ndarray]:
    """For one axis: (crop start, crop length, resample matrix or None, output centres in view px)."""
    if fit == "crop" and length >= size:
        s = start + (length - size) // 2
        centres = s + np.arange(size) + 0.5
        return s, size, None, centres
    m = resample_matrix(length, size)
    centres = start + (np.arange(size) + 0.5) * (length / size)
    return start, length, (None if length == size else m), centres


def model_windows(rois: Any, size: int, view_hw: tuple[int, int], fit: str = "crop") -> np.ndarray:
    """The windows the model reads for view-pixel RoIs int [P, 4] -> int64 [P, 4] (module doc): with
    ``fit="crop"`` each dimension shorter than ``size`` grows about the RoI's centre to ``size`` px,
    shifted to lie inside the view (a view shorter than ``size`` keeps the RoI's extent); longer
    dimensions and ``fit="area"`` are unchanged."""
    out = np.array(np.asarray(rois, dtype=np.int64).reshape(-1, 4))
    if fit != "crop":
        return out
    for a, lim in ((0, int(view_hw[1])), (1, int(view_hw[0]))):
        grow = (out[:, a + 2] < size) & (lim >= size)
        start = out[:, a] + out[:, a + 2] // 2 - size // 2
        out[grow, a] = np.clip(start[grow], 0, lim - size)
        out[grow, a + 2] = size
    return out


def fit_patch(view: np.ndarray, roi: np.ndarray | tuple[int, int, int, int], size: int, fit: str) -> np.ndarray:
    """The RoI ``(x, y, w, h)`` of a 2-D ``view`` brought to [size, size] float32 (see module doc)."""
    x, y, w, h = (int(v) for v in roi)
    cx, lx, mx, _ = _fit_axis(x, w, size, fit)
    cy, ly, my, _ = _fit_axis(y, h, size, fit)
    p = np.asarray(view[cy : cy + ly, cx : cx + lx], dtype=np.float64)
    if p.shape != (ly, lx):
        raise BadInput(f"RoI (x={x}, y={y}, w={w}, h={h}) is not inside the {view.shape[1]}x{view.shape[0]} view")
    if my is not None:
        p = my @ p
    if mx is not None:
        p = p @ mx.T
    return p.astype(np.float32)


def pe_planes(roi_full_xywh: np.ndarray, sensor_hw: tuple[int, int], size: int, fit: str) -> tuple[np.ndarray, np.ndarray]:
    """RoI-PE (x plane, y plane), float32 [size, size] each, for one RoI on the full plane."""
    H, W = int(sensor_hw[0]), int(sensor_hw[1])
    x, y, w, h = (int(v) for v in roi_full_xywh)
    *_, xc = _fit_axis(x, w, size, fit)
    *_, yc = _fit_axis(y, h, size, fit)
    px = (2.0 * xc / W - 1.0).astype(np.float32)
    py = (2.0 * yc / H - 1.0).astype(np.float32)
    return np.broadcast_to(px[None, :], (size, size)), np.broadcast_to(py[:, None], (size, size))


def normalise_views(left: np.ndarray, right: np.ndarray, eps: float = 1e-3,
                    out: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-view mean gain removal, then one common std (batched over leading axes; last two are pixels).
    ``out``: two float32 arrays of the views' shape to write the result into (``encode_fitted``
    writes channels 0 and 1 of its tensor so); default new arrays."""
    left = np.asarray(left, dtype=np.float32)
    right = np.asarray(right, dtype=np.float32)
    ml = np.maximum(left.mean(axis=(-2, -1), keepdims=True), eps)
    mr = np.maximum(right.mean(axis=(-2, -1), keepdims=True), eps)
    nl, nr = out if out is not None else (None, None)
    nl = np.divide(left, ml, out=nl)  # float32, finished in place: left / ml - 1, then / sd
    nr = np.divide(right, mr, out=nr)
    nl -= 1.0
    nr -= 1.0
    sq = nl * nl  # one scratch array for both views' squares
    var = sq.mean(axis=(-2, -1), keepdims=True)
    np.multiply(nr, nr, out=sq)
    var = 0.5 * (var + sq.mean(axis=(-2, -1), keepdims=True))
    sd = (np.sqrt(var) + eps).astype(np.float32)
    nl /= sd
    nr /= sd
    return nl, nr


def lens_pe_value(slice_index: int, n_slices: int) -> float:
    """``k / (n - 1)``; BadInput when k is outside [0, n) or n < 2."""
    if n_slices < 2:
        raise BadInput(f"n_slices must be >= 2, got {n_slices}")
    if not 0 <= slice_index < n_slices:
        raise BadInput(f"slice index {slice_index} is outside [0, {n_slices})")
    return float(slice_index) / float(n_slices - 1)


def encode_fitted(
    left: np.ndarray,
    right: np.ndarray,
    rois_full_xywh: np.ndarray,
    sensor_hw: tuple[int, int],
    slice_index: np.ndarray,
    n_slices: int,
    cfg: EncodingConfig,
) -> np.ndarray:
    """Encode patches already brought to [B, S, S] (raw, black-subtracted) -> float32 [B, 5, S, S].

    ``rois_full_xywh`` int [B, 4]: the RoIs on the full plane (view RoI + origin);
    ``slice_index`` int [B]: the slice each patch was taken at.
    """
    S = cfg.size
    left = np.asarray(left, dtype=np.float32)
    right = np.asarray(right, dtype=np.float32)
    B = left.shape[0]
    if left.shape != (B, S, S) or right.shape != (B, S, S):
        raise BadInput(f"patches must be [B, {S}, {S}], got left {left.shape} right {right.shape}")
    rois = np.asarray(rois_full_xywh).reshape(B, 4)
    ks = np.broadcast_to(np.asarray(slice_index, dtype=np.int64), (B,))
    out = np.empty((B, N_CHANNELS, S, S), dtype=np.float32)  # every channel written below
    normalise_views(left, right, cfg.eps, out=(out[:, 0], out[:, 1]))
    for k in ks:  # the slice indices' checks, as lens_pe_value words them
        if cfg.lens_pe:
            lens_pe_value(int(k), n_slices)
        elif not 0 <= k < n_slices:
            raise BadInput(f"slice index {k} is outside [0, {n_slices})")
    if cfg.roi_pe:  # pe_planes for the whole batch at once (the same centres, the same float32 values)
        H, W = int(sensor_hw[0]), int(sensor_hw[1])
        out[:, 2] = (2.0 * _centres(rois[:, 0], rois[:, 2], S, cfg.fit) / W - 1.0).astype(np.float32)[:, None, :]
        out[:, 3] = (2.0 * _centres(rois[:, 1], rois[:, 3], S, cfg.fit) / H - 1.0).astype(np.float32)[:, :, None]
    else:
        out[:, 2:4] = 0.0
    out[:, 4] = (ks.astype(np.float64) / float(n_slices - 1))[:, None, None] if cfg.lens_pe else 0.0
    return out


def _centres(start: np.ndarray, length: np.ndarray, size: int, fit: str) -> np.ndarray:
    """``_fit_axis``'s output centres (view px) for B RoIs along one axis, float64 [B, size]."""
    start = np.asarray(start, dtype=np.int64)
    length = np.asarray(length, dtype=np.int64)
    crop = np.full(start.shape, fit == "crop") & (length >= size)
    out = np.empty((start.size, size))
    k = np.arange(size)
    if crop.any():
        out[crop] = (start[crop] + (length[crop] - size) // 2)[:, None] + k + 0.5
    if not crop.all():
        area = ~crop
        out[area] = start[area][:, None] + (k + 0.5) * (length[area] / size)[:, None]
    return out


def extract_patches(
    left: np.ndarray, right: np.ndarray, rois: np.ndarray, cfg: EncodingConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Raw patches [P, S, S] of view-pixel RoIs [P, 4] of one frame's views."""
    rois = np.asarray(rois).reshape(-1, 4)
    pl = np.stack([fit_patch(left, r, cfg.size, cfg.fit) for r in rois])
    pr = np.stack([fit_patch(right, r, cfg.size, cfg.fit) for r in rois])
    return pl, pr


def encode_frame_rois(
    left: np.ndarray,
    right: np.ndarray,
    rois: np.ndarray,
    origin: tuple[int, int],
    sensor_hw: tuple[int, int],
    slice_index: int,
    n_slices: int,
    cfg: EncodingConfig,
    flatfield: FlatField | None = None,
) -> np.ndarray:
    """Encode the RoIs (view pixels, int [P, 4]) of one frame at slice ``slice_index`` -> [P, 5, S, S]."""
    rois = np.asarray(rois, dtype=np.int64).reshape(-1, 4)
    full = rois.copy()
    full[:, 0] += int(origin[1])
    full[:, 1] += int(origin[0])
    if flatfield is not None:
        pls, prs = [], []
        for r, f in zip(rois, full):
            x, y, w, h = (int(v) for v in r)
            lp, rp = flatfield(left[y : y + h, x : x + w], right[y : y + h, x : x + w],
                               (int(f[0]), int(f[1]), w, h), (int(sensor_hw[0]), int(sensor_hw[1])))
            local = np.array([0, 0, w, h])
            pls.append(fit_patch(lp, local, cfg.size, cfg.fit))
            prs.append(fit_patch(rp, local, cfg.size, cfg.fit))
        pl, pr = np.stack(pls), np.stack(prs)
    else:
        pl, pr = extract_patches(left, right, rois, cfg)
    return encode_fitted(pl, pr, full, sensor_hw, np.full(len(rois), slice_index), n_slices, cfg)
