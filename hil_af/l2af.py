"""Import the Learning-to-Autofocus dataset (Herrmann et al., CVPR 2020) as focal stacks.

Layout read (one folder per scene, 49 focus slices each)::

    ROOT/raw_up_left_pd/<scene>/<k>/result_up_pd_left_center.png
    ROOT/raw_up_right_pd/<scene>/<k>/result_up_pd_right_center.png
    ROOT/merged_depth/<scene>/result_merged_depth_center.png

Slice k was focused at ``FOCUS_DISTANCES_MM[k]`` (from the dataset's readme:
3910.92 mm at k = 0 down to 102.01 mm at k = 48), so the slice dioptres
increase with k and the stack's ``lens_positions`` are simply k
(``lens_units = "l2af_slice"``) with ``meta["lens_dioptres"]`` = 1000 / mm.
The merged depth PNG holds normalised inverse depth; we map it linearly
onto the dioptre range of the slices (0 -> 1/3.91 m, full scale -> 1/0.102 m;
``depth_range_dpt`` overrides that), take the median over each RoI and snap
it to the nearest slice in dioptres: that is the RoI's ``gt_index``.
PNG decoding uses Pillow (extra ``[l2af]``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import BadInput, FormatError
from .frames import grid_rois
from .stacks import FocalStack, save_stack

FOCUS_DISTANCES_MM = (
    3910.92, 2289.27, 1508.71, 1185.83, 935.91, 801.09, 700.37, 605.39, 546.23, 486.87, 447.99, 407.40,
    379.91, 350.41, 329.95, 307.54, 291.72, 274.13, 261.53, 247.35, 237.08, 225.41, 216.88, 207.10,
    198.18, 191.60, 183.96, 178.29, 171.69, 165.57, 160.99, 155.61, 150.59, 146.81, 142.35, 138.98,
    134.99, 131.23, 127.69, 124.99, 121.77, 118.73, 116.40, 113.63, 110.99, 108.47, 106.54, 104.23, 102.01,
)
SLICE_DIOPTRES = 1000.0 / np.asarray(FOCUS_DISTANCES_MM)
LEFT = ("raw_up_left_pd", "result_up_pd_left_center.png")
RIGHT = ("raw_up_right_pd", "result_up_pd_right_center.png")
DEPTH = ("merged_depth", "result_merged_depth_center.png")


def _read_png(path: Path) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        from .text import install_hint

        raise BadInput(f"reading Learning-to-Autofocus PNGs needs Pillow, the [l2af] extra: {install_hint('l2af')}") from None
    if not path.exists():
        raise FormatError(f"{path}: missing (expected by the Learning-to-Autofocus layout)")
    try:
        with Image.open(path) as im:
            a = np.asarray(im)
    except Exception as e:  # Pillow raises many types for broken files
        raise FormatError(f"{path}: not a readable PNG: {e}") from None
    if a.ndim == 3:  # colour PNG: the PD planes are single channel; use the first
        a = a[..., 0]
    return a


def scenes(root: str | Path) -> list[str]:
    """Scene names present under ``ROOT/raw_up_left_pd``."""
    base = Path(root) / LEFT[0]
    if not base.is_dir():
        raise BadInput(f"{root}: not a Learning-to-Autofocus tree (no {LEFT[0]}/ folder)")
    return sorted(p.name for p in base.iterdir() if p.is_dir())


def depth_to_dioptres(depth: np.ndarray, depth_range_dpt: tuple[float, float] | None = None) -> np.ndarray:
    """Normalised inverse depth (integer PNG values) -> dioptres, linearly over the slice range."""
    full = float(np.iinfo(depth.dtype).max) if np.issubdtype(depth.dtype, np.integer) else 1.0
    lo, hi = depth_range_dpt or (float(SLICE_DIOPTRES[0]), float(SLICE_DIOPTRES[-1]))
    return lo + (depth.astype(np.float64) / full) * (hi - lo)


def import_scene(root: str | Path, scene: str, *, grid: tuple[int, int] = (3, 4), roi_size: int = 64,
                 depth_range_dpt: tuple[float, float] | None = None) -> FocalStack:
    """One scene as a FocalStack (views as stored in the PNGs, black level 0)."""
    root = Path(root)
    left, right = [], []
    for k in range(len(FOCUS_DISTANCES_MM)):
        left.append(_read_png(root / LEFT[0] / scene / str(k) / LEFT[1]))
        right.append(_read_png(root / RIGHT[0] / scene / str(k) / RIGHT[1]))
    shapes = {a.shape for a in left + right}
    if len(shapes) != 1:
        raise FormatError(f"{root}/{scene}: PD images differ in size across slices: {sorted(shapes)}")
    L = np.stack(left)
    R = np.stack(right)
    dtype = np.uint16 if L.dtype in (np.uint8, np.uint16) else np.float32
    depth = _read_png(root / DEPTH[0] / scene / DEPTH[1])
    H, W = L.shape[1:]
    if depth.shape != (H, W):  # nearest-neighbour resample of the depth map onto the PD grid
        yi = (np.arange(H) * depth.shape[0] / H).astype(int)
        xi = (np.arange(W) * depth.shape[1] / W).astype(int)
        depth = depth[yi][:, xi]
    dpt = depth_to_dioptres(depth, depth_range_dpt)
    rois = grid_rois((H, W), *grid, size=roi_size)
    gt = np.empty(len(rois), np.int16)
    for i, (x, y, w, h) in enumerate(rois):
        d = float(np.median(dpt[y:y + h, x:x + w]))
        gt[i] = int(np.argmin(np.abs(SLICE_DIOPTRES - d)))
    white = 255 if L.dtype == np.uint8 else 65535
    meta = {"format": "focal-stack", "version": 1, "black_level": 0, "white_level": white,
            "lens_units": "l2af_slice", "lens_dioptres": [float(v) for v in SLICE_DIOPTRES],
            "source": "hil-af import-l2af", "scene": scene, "rig": "Learning to Autofocus (Pixel 3, Herrmann et al. 2020)"}
    return FocalStack(left=L.astype(dtype), right=R.astype(dtype),
                      lens_positions=np.arange(len(FOCUS_DISTANCES_MM), dtype=np.float64), rois=rois,
                      gt_index=gt, sensor_hw=(H, W), origin=(0, 0), meta=meta)


def import_tree(root: str | Path, out: str | Path, **kw) -> list[Path]:
    """Convert every scene under ``root`` into ``out/<scene>.npz``; returns the written paths."""
    written = []
    for scene in scenes(root):
        path = Path(out) / f"{scene}.npz"
        save_stack(path, import_scene(root, scene, **kw))
        written.append(path)
    if not written:
        raise BadInput(f"{root}: no scenes found under {LEFT[0]}/")
    return written
