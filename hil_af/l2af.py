"""Import the Learning-to-Autofocus dataset (Herrmann et al., CVPR 2020) as focal stacks.

Release layout (docs/l2af.md gives the sources)::

    ROOT/<split>/raw_up_left_pd/<scene>/<k>/result_up_pd_left_<view>.png   (k = 0..48; upsampled PD)
    ROOT/<split>/raw_up_right_pd/<scene>/<k>/result_up_pd_right_<view>.png
    ROOT/<split>/raw_left_pd/<scene>/<k>/result_pd_left_<view>.png         (non-upsampled PD)
    ROOT/<split>/raw_right_pd/<scene>/<k>/result_pd_right_<view>.png
    ROOT/<split>/merged_depth/<scene>/result_merged_depth_<view>.png       (8-bit)
    ROOT/<split>/merged_conf/<scene>/result_merged_conf_<view>.exr         (float; .png accepted)

with ``<split>`` one of ``train1`` .. ``train7``, ``test`` and ``<view>`` the
capturing phone of the rig (``center`` by default).

Slice k was focused at ``FOCUS_DISTANCES_MM[k]`` (3910.92 mm at k = 0 down to
102.01 mm at k = 48), so the slice dioptres increase with k; the stack's
``lens_positions`` are k (``lens_units = "l2af_slice"``) and
``meta["lens_dioptres"]`` = 1000 / mm.

Depth convention: the 8-bit value p = png / 255 is normalised inverse depth
with near plane ``near_m`` (0.1 m) and far plane ``far_m`` (100 m),
depth = near * far / (far - (far - near) * p), so p = 0 is the NEAR plane.
The depth map is bilinearly resampled onto the PD grid; a RoI's ground truth
is the median depth over the RoI, in dioptres, placed on the slice dioptres
by linear interpolation of the slice index and rounded (np.interp clamps
outside the swept range).  A RoI whose median confidence is below
``min_conf`` (0.99) gets ``gt_index = -1`` (training skips it).
PNG decoding uses Pillow (extra ``[l2af]``); the ``.exr`` confidence maps of
the release need the ``OpenEXR`` package.
"""

from __future__ import annotations

import fnmatch
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .errors import BadInput, FormatError
from .frames import grid_rois
from .stacks import FocalStack, load_stack, save_stack
from .text import int_pair

FOCUS_DISTANCES_MM = (
    3910.92, 2289.27, 1508.71, 1185.83, 935.91, 801.09, 700.37, 605.39, 546.23, 486.87, 447.99, 407.40,
    379.91, 350.41, 329.95, 307.54, 291.72, 274.13, 261.53, 247.35, 237.08, 225.41, 216.88, 207.10,
    198.18, 191.60, 183.96, 178.29, 171.69, 165.57, 160.99, 155.61, 150.59, 146.81, 142.35, 138.98,
    134.99, 131.23, 127.69, 124.99, 121.77, 118.73, 116.40, 113.63, 110.99, 108.47, 106.54, 104.23, 102.01,
)
SLICE_DIOPTRES = 1000.0 / np.asarray(FOCUS_DISTANCES_MM)
NEAR_M, FAR_M = 0.1, 100.0
MIN_CONF = 0.99
# PD variant -> (left folder, right folder, file name pattern)
PD_VARIANTS = {
    "up": ("raw_up_left_pd", "raw_up_right_pd", "result_up_pd_{side}_{view}.png"),
    "raw": ("raw_left_pd", "raw_right_pd", "result_pd_{side}_{view}.png"),
}


@dataclass(frozen=True)
class ImportConfig:
    rois: tuple = ("grid", 3, 4)  # ("grid", rows, cols) or ("patches", size, stride)
    roi_size: int = 64  # grid RoIs only
    pd: str = "auto"  # "up" | "raw" | "auto" (up when present)
    view: str = "center"
    near_m: float = NEAR_M
    far_m: float = FAR_M
    min_conf: float = MIN_CONF


# --------------------------------------------------------------------------- reading


def _read_png(path: Path) -> np.ndarray:
    from .pngread import read_png

    return read_png(path, "Learning-to-Autofocus")


def _read_exr_first_channel(path: Path) -> np.ndarray:
    """The R channel of an EXR (what cv2's BGR ``[..., 2]`` reads in the public preprocessing code)."""
    try:
        import OpenEXR  # type: ignore[import-not-found]
    except ImportError:
        raise BadInput(f"{path}: reading the .exr confidence maps needs OpenEXR: pip install OpenEXR "
                       "(or convert them to 16-bit PNGs next to the .exr)") from None
    try:
        with OpenEXR.File(str(path)) as f:
            ch = f.channels()
            for name in ("R", "RGB", "RGBA", "Y"):
                if name in ch:
                    a = np.asarray(ch[name].pixels, dtype=np.float32)
                    return a[..., 0] if a.ndim == 3 else a
            a = np.asarray(next(iter(ch.values())).pixels, dtype=np.float32)
            return a[..., 0] if a.ndim == 3 else a
    except Exception as e:
        raise FormatError(f"{path}: not a readable EXR: {e}") from None


def _unit(a: np.ndarray) -> np.ndarray:
    """Integer image -> [0, 1] by its dtype's full scale; float images unchanged."""
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float64) / float(np.iinfo(a.dtype).max)
    return a.astype(np.float64)


def resize_bilinear(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resampling with pixel-centre alignment (cv2.resize INTER_LINEAR's convention)."""
    H, W = hw
    h, w = a.shape
    if (h, w) == (H, W):
        return a.astype(np.float64)

    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        i0 = np.floor(s).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, s - i0

    y0, y1, fy = axis(H, h)
    x0, x1, fx = axis(W, w)
    a = a.astype(np.float64)
    top = a[y0][:, x0] * (1 - fx) + a[y0][:, x1] * fx
    bot = a[y1][:, x0] * (1 - fx) + a[y1][:, x1] * fx
    return top * (1 - fy[:, None]) + bot * fy[:, None]


def depth_m(p: np.ndarray, near_m: float = NEAR_M, far_m: float = FAR_M) -> np.ndarray:
    """Normalised inverse depth p in [0, 1] (0 = near plane) -> metres."""
    return near_m * far_m / (far_m - (far_m - near_m) * p)


def slice_from_depth(median_depth_m: float) -> int:
    """The slice index of a depth: its dioptres interpolated on the slice dioptres, rounded."""
    return int(round(float(np.interp(1.0 / median_depth_m, SLICE_DIOPTRES, np.arange(len(SLICE_DIOPTRES))))))


# --------------------------------------------------------------------------- layout


def is_split(folder: Path) -> bool:
    return any((folder / v[0]).is_dir() for v in PD_VARIANTS.values())


def find_splits(root: str | Path, split: str | None = None) -> list[Path]:
    """The split folders under ``root`` (or ``root`` itself when it is one), filtered by ``split``
    (comma-separated names or shell patterns, e.g. ``train*``)."""
    root = Path(root)
    if not root.is_dir():
        raise BadInput(f"{root}: no such folder")
    if is_split(root):
        found = [root]
    else:
        found = sorted(p for p in root.iterdir() if p.is_dir() and is_split(p))
    if not found:
        raise BadInput(f"{root}: not a Learning-to-Autofocus tree (no raw_up_left_pd/ or raw_left_pd/ folder, "
                       "nor split folders such as train1/ or test/ holding one)")
    if split:
        pats = [s.strip() for s in split.split(",") if s.strip()]
        found = [p for p in found if any(fnmatch.fnmatch(p.name, pat) for pat in pats)]
        if not found:
            raise BadInput(f"{root}: no split matches --split {split!r}")
    return found


def pd_variant(split_dir: Path, pd: str) -> str:
    if pd not in ("up", "raw", "auto"):
        raise BadInput(f"--pd must be up, raw or auto, got {pd!r}")
    if pd == "auto":
        pd = "up" if (split_dir / PD_VARIANTS["up"][0]).is_dir() else "raw"
    if not (split_dir / PD_VARIANTS[pd][0]).is_dir():
        raise BadInput(f"{split_dir}: no {PD_VARIANTS[pd][0]}/ folder")
    return pd


def scenes(split_dir: str | Path, pd: str = "auto") -> list[str]:
    """Scene names present under the split's left PD folder."""
    d = Path(split_dir)
    base = d / PD_VARIANTS[pd_variant(d, pd)][0]
    return sorted(p.name for p in base.iterdir() if p.is_dir())


def parse_rois(spec: str) -> tuple:
    """``grid:RxC`` or ``patches:SIZE[/STRIDE]`` (the paper's 128 px patches: ``patches:128/40``)."""
    try:
        kind, rest = spec.split(":")
        if kind == "grid":
            r, c = int_pair(rest)
            if r < 1 or c < 1:
                raise ValueError
            return ("grid", r, c)
        if kind == "patches":
            size, _, stride = rest.partition("/")
            s, st = int(size), int(stride or 40)
            if s < 8 or st < 1:
                raise ValueError
            return ("patches", s, st)
        raise ValueError
    except ValueError:
        raise BadInput(f"--rois must look like grid:RxC or patches:SIZE[/STRIDE] (e.g. grid:3x4, patches:128/40), "
                       f"got {spec!r}") from None


def make_rois(hw: tuple[int, int], rois: tuple, roi_size: int) -> np.ndarray:
    H, W = hw
    if rois[0] == "grid":
        return grid_rois((H, W), rois[1], rois[2], size=roi_size)
    s, st = rois[1], rois[2]
    if s > H or s > W:
        raise BadInput(f"patches of {s} px do not fit a {W}x{H} view")
    # patchify's order: row-major over (y, x) windows, step ``st``
    return np.array([[x, y, s, s] for y in range(0, H - s + 1, st) for x in range(0, W - s + 1, st)], dtype=np.int32)


# --------------------------------------------------------------------------- import


def roi_ground_truth(depth_png: np.ndarray, conf: np.ndarray | None, hw: tuple[int, int], rois: np.ndarray,
                     cfg: ImportConfig) -> np.ndarray:
    """gt slice per RoI (-1 where the median confidence is below ``cfg.min_conf``)."""
    dm = depth_m(resize_bilinear(_unit(depth_png), hw), cfg.near_m, cfg.far_m)
    cf = resize_bilinear(np.minimum(_unit(conf), 1.0), hw) if conf is not None else None
    gt = np.empty(len(rois), np.int16)
    for i, (x, y, w, h) in enumerate(rois):
        if cf is not None and float(np.median(cf[y:y + h, x:x + w])) < cfg.min_conf:
            gt[i] = -1
        else:
            gt[i] = slice_from_depth(float(np.median(dm[y:y + h, x:x + w])))
    return gt


def _conf_map(split_dir: Path, scene: str, cfg: ImportConfig) -> np.ndarray | None:
    if cfg.min_conf <= 0:
        return None
    base = split_dir / "merged_conf" / scene / f"result_merged_conf_{cfg.view}"
    if base.with_suffix(".png").exists():
        return _read_png(base.with_suffix(".png"))
    if base.with_suffix(".exr").exists():
        return _read_exr_first_channel(base.with_suffix(".exr"))
    raise FormatError(f"{base}.exr: missing (expected by the Learning-to-Autofocus layout; "
                      "--min-conf 0 imports without confidence)")


def import_scene(split_dir: str | Path, scene: str, cfg: ImportConfig = ImportConfig()) -> FocalStack:
    """One scene of one split as a FocalStack (views as stored in the PNGs, black level 0)."""
    d = Path(split_dir)
    pd = pd_variant(d, cfg.pd)
    lf, rf, pattern = PD_VARIANTS[pd]
    left, right = [], []
    for k in range(len(FOCUS_DISTANCES_MM)):
        left.append(_read_png(d / lf / scene / str(k) / pattern.format(side="left", view=cfg.view)))
        right.append(_read_png(d / rf / scene / str(k) / pattern.format(side="right", view=cfg.view)))
    shapes = {a.shape for a in left + right}
    if len(shapes) != 1:
        raise FormatError(f"{d}/{scene}: PD images differ in size across slices: {sorted(shapes)}")
    L, R = np.stack(left), np.stack(right)
    dtype = np.uint16 if L.dtype in (np.uint8, np.uint16) else np.float32
    H, W = L.shape[1:]
    depth = _read_png(d / "merged_depth" / scene / f"result_merged_depth_{cfg.view}.png")
    rois = make_rois((H, W), cfg.rois, cfg.roi_size)
    gt = roi_ground_truth(depth, _conf_map(d, scene, cfg), (H, W), rois, cfg)
    white = 255 if L.dtype == np.uint8 else 65535
    meta = {"format": "focal-stack", "version": 1, "black_level": 0, "white_level": white,
            "lens_units": "l2af_slice", "lens_dioptres": [float(v) for v in SLICE_DIOPTRES],
            "source": "hil-af import-l2af", "scene": scene, "split": d.name, "pd": pd, "view": cfg.view,
            "depth_convention": {"near_m": cfg.near_m, "far_m": cfg.far_m, "min_conf": cfg.min_conf},
            "rig": "Learning to Autofocus (Pixel 3, Herrmann et al. 2020)"}
    return FocalStack(left=L.astype(dtype), right=R.astype(dtype),
                      lens_positions=np.arange(len(FOCUS_DISTANCES_MM), dtype=np.float64), rois=rois,
                      gt_index=gt, sensor_hw=(H, W), origin=(0, 0), meta=meta)


def _complete(path: Path) -> bool:
    try:
        load_stack(path)
        return True
    except BadInput:
        return False


def import_tree(root: str | Path, out: str | Path, cfg: ImportConfig = ImportConfig(), *, split: str | None = None,
                resume: bool = False, progress: bool | None = None,
                on_scene: Callable[[Path], None] | None = None) -> dict[str, list[Path]]:
    """Convert the scenes of every selected split into focal stacks.

    A dataset root writes ``out/<split>/<scene>.npz``; one split folder writes
    ``out/<scene>.npz``.  With ``resume`` a stack already written (and readable) is kept.
    ``progress``: a tqdm bar over the scenes (default: only when stderr is a terminal).
    Returns {"written": [...], "kept": [...]}."""
    root = Path(root)
    splits = find_splits(root, split)
    single = splits == [root]
    jobs: list[tuple[Path, str, Path]] = []
    for sd in splits:
        dest = Path(out) if single else Path(out) / sd.name
        jobs += [(sd, sc, dest / f"{sc}.npz") for sc in scenes(sd, cfg.pd)]
    if not jobs:
        raise BadInput(f"{root}: no scenes found")
    from tqdm import tqdm

    show = sys.stderr.isatty() if progress is None else progress
    written: list[Path] = []
    kept: list[Path] = []
    it: Iterable = tqdm(jobs, desc="import-l2af", unit="scene", disable=not show)
    for sd, sc, path in it:
        if resume and path.exists() and _complete(path):
            kept.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        save_stack(path, import_scene(sd, sc, cfg))
        written.append(path)
        if on_scene is not None:
            on_scene(path)
    return {"written": written, "kept": kept}
