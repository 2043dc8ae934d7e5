"""Importer of the real Google Pixel 4 dual-pixel captures of Xin et al., "Defocus Map Estimation and
Deblurring from a Single Dual-Pixel Image", ICCV 2021 (public repository
cmu-ci-lab/dual_pixel_defocus_estimation_deblurring, folder ``DP_data_pixel_4``).

The release holds 17 scenes: ``NNN_left.png`` / ``NNN_right.png`` (uint16 PNG, 1512 x 2016, the green
channel, 14-bit DN with black level 1024, as the release's README says) and
``gt_defocus_map/NNN_gt.png`` (uint8, 1008 x 1344: the defocus map of the central crop, normalised to
0..255 per scene, so only its order means anything; larger is more blur).

``import_scene`` writes the central 1008 x 1344 crop of both views as a frame file (``origin`` (252,
336), ``sensor_hw`` (1512, 2016), raw DN kept, black 1024, white 16383) and the ground truth as
``NNN_gt.npz`` (key ``defocus``), the layout the real-capture tests read.  Scenes 001-004 so written
equal the repo's test captures bit for bit (tests/test_xin_import.py).  The captures are the
dataset's: cite it, and do not commit them.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import BadInput, FormatError
from .frames import DualPixelFrame

BLACK, WHITE = 1024, 16383  # DN, the release README (14-bit, black level 1024)
SENSOR_HW = (1512, 2016)  # view plane of the PNGs, px
CROP_HW = (1008, 1344)  # the ground-truth maps' extent: the central crop, px
ORIGIN = ((SENSOR_HW[0] - CROP_HW[0]) // 2, (SENSOR_HW[1] - CROP_HW[1]) // 2)  # (252, 336)
SOURCE = "Google Pixel 4 dual-pixel capture, green channel, 14-bit (Xin et al. ICCV 2021 dataset)"
_SCENE = re.compile(r"^(\d{3})_left\.png$")


def _read_png(path: Path, dtype: type, hw: tuple[int, int]) -> np.ndarray:
    """One single-channel PNG of the release, checked for its size (before decoding) and sample depth."""
    from .pngread import read_png

    a = read_png(path, "DP_data_pixel_4", hw)
    if np.dtype(dtype) == np.uint16 and a.dtype != np.uint16:  # Pillow gives I;16 as uint16, mode I as int32
        if a.dtype not in (np.int32, np.uint32) or a.min() < 0 or a.max() > 65535:
            raise FormatError(f"{path}: expected 16-bit samples, got {a.dtype}")
    if np.dtype(dtype) == np.uint8 and a.dtype != np.uint8:
        raise FormatError(f"{path}: expected 8-bit samples, got {a.dtype}")
    return a.astype(dtype)


def scenes(root: str | Path) -> list[str]:
    """Scene ids (``"001"`` ..) of a ``DP_data_pixel_4`` folder, sorted; BadInput when it holds none."""
    root = Path(root)
    if not root.is_dir():
        raise BadInput(f"{root}: not a folder (point at the release's DP_data_pixel_4)")
    ids = sorted(m.group(1) for p in root.iterdir() if (m := _SCENE.match(p.name)))
    if not ids:
        raise BadInput(f"{root}: no NNN_left.png captures (point at the release's DP_data_pixel_4)")
    return ids


def read_scene(root: str | Path, scene: str) -> tuple[DualPixelFrame, np.ndarray]:
    """(frame of the central crop, black-subtracted float32; ground-truth defocus uint8 [1008, 1344])."""
    root = Path(root)
    left = _read_png(root / f"{scene}_left.png", np.uint16, SENSOR_HW)
    right = _read_png(root / f"{scene}_right.png", np.uint16, SENSOR_HW)
    gt = _read_png(root / "gt_defocus_map" / f"{scene}_gt.png", np.uint8, CROP_HW)
    y, x = ORIGIN
    h, w = CROP_HW
    crop = (slice(y, y + h), slice(x, x + w))
    frame = DualPixelFrame(left=left[crop].astype(np.float32) - BLACK, right=right[crop].astype(np.float32) - BLACK,
                           sensor_hw=SENSOR_HW, origin=ORIGIN, white_level=float(WHITE - BLACK),
                           lens_position=float("nan"))
    return frame, gt


def import_scene(root: str | Path, scene: str, out: str | Path) -> tuple[Path, Path]:
    """Write ``out/NNN.npz`` (frame file) and ``out/NNN_gt.npz`` (key ``defocus``); returns both paths."""
    from .atomic import atomic_open
    from .stacks import save_frame

    frame, gt = read_scene(root, scene)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fpath = save_frame(out / f"{scene}.npz", frame, black_level=BLACK, white_level=WHITE, dtype="uint16",
                       source=SOURCE, extra_meta={"scene": scene})
    gpath = out / f"{scene}_gt.npz"
    with atomic_open(gpath) as fh:
        np.savez_compressed(fh, defocus=gt)
    return fpath, gpath


def import_tree(root: str | Path, out: str | Path, only: list[str] | None = None) -> list[str]:
    """Import every scene of ``root`` (or those in ``only``); returns the scene ids written."""
    ids = scenes(root)
    if only:
        wanted = set(only)
        missing = sorted(wanted - set(ids))
        if missing:
            raise BadInput(f"{root}: no scene {', '.join(missing)} (it has {ids[0]}..{ids[-1]})")
        ids = [s for s in ids if s in wanted]
    for s in ids:
        import_scene(root, s, out)
    return ids
