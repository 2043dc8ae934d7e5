"""Make focal stacks with the project's simulator for training / evaluating the PE model.

``python -m hil_af.model.simdata --out DIR --profile sim-default --seeds 0:50 [--slices 49] [--grid 3x4|dense] [--roi-size 64]``
writes DIR/<profile>-s<seed>.npz, one lens sweep (hil_af.capture.sweep) of the
``cards`` scene of ``sim://?seed=N&profile=P&scene=cards`` each, on a virtual
clock, gt from the sim's truth.  RoIs: ``grid_rois((H, W), R, C)`` (64 px; the
standard 3x4 set for evaluation) or ``dense``: 64 px RoIs every 32 px (7 x 11 =
77 overlapping RoIs on 256 x 384), which gives training 6x more RoIs per
rendered sweep (rendering, not RoIs, is what a stack costs).  ``--roi-size N``
makes every RoI N px (a grid's RoIs at most the grid cell; dense RoIs still
every 32 px: 5 x 9 = 45 RoIs of 112 px on 256 x 384), for a model whose input
is N px.  ``--grid cells``: N px RoIs inside each of the scene's 3 x 4 card
cells (3 offsets per axis: 108 per sweep), so that every RoI lies on one card;
``--view HxW`` renders larger views (the sim URL's ``size``): 112 px RoIs fit
inside a card only on views of about 448 x 672 and up.
Existing files are kept (so an interrupted run resumes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..errors import BadInput
from ..text import int_pair


def dense_rois(view_hw: tuple[int, int], size: int = 64, stride: int = 32) -> np.ndarray:
    """``size`` px RoIs every ``stride`` px covering the view, int32 [P, 4]."""
    H, W = view_hw
    return np.array([[x, y, size, size] for y in range(0, H - size + 1, stride) for x in range(0, W - size + 1, stride)],
                    dtype=np.int32)


def cell_rois(view_hw: tuple[int, int], size: int) -> np.ndarray:
    """``size`` px RoIs inside the sim scene's card cells (``hil_af.sim.scene.cell_edges``): in each
    cell, 3 offsets per axis (start, middle, end; 1 where the cell is at most ``size``), so every RoI
    lies on one card (its truth is the card's, but for occluders), int32 [P, 4]."""
    from ..sim.scene import cell_edges
    from .defocus import _offsets

    ys, xs = cell_edges(view_hw)
    out = []
    for y0, y1 in zip(ys[:-1], ys[1:]):
        for x0, x1 in zip(xs[:-1], xs[1:]):
            s = int(min(size, y1 - y0, x1 - x0))
            for oy in _offsets(int(y1 - y0), s):
                for ox in _offsets(int(x1 - x0), s):
                    out.append((int(x0) + ox, int(y0) + oy, s, s))
    return np.array(out, dtype=np.int32)


def make_stack(out: Path, profile: str, seed: int, n_slices: int = 49, grid: tuple[int, int] | str = (3, 4),
               scene: str = "cards", roi_size: int = 64, view: tuple[int, int] | None = None) -> Path:
    from ..capture import sweep
    from ..clock import SimClock
    from ..drivers.registry import open_rig
    from ..frames import grid_rois
    from ..stacks import save_stack

    url = f"sim://?seed={seed}&profile={profile}&scene={scene}"
    if view is not None:
        url += f"&size={int(view[0])}x{int(view[1])}"
    with open_rig(url, clock=SimClock()) as rig:
        if isinstance(grid, str) and grid not in ("dense", "cells"):
            raise BadInput(f"grid {grid!r}: expected (rows, cols), 'dense' or 'cells'")

        def rois(view_hw: tuple[int, int]) -> np.ndarray:  # view pixels, int32 [P, 4]
            if grid == "cells":
                return cell_rois(view_hw, roi_size)
            if isinstance(grid, str):
                return dense_rois(view_hw, roi_size)
            return grid_rois(view_hw, grid[0], grid[1], roi_size)

        st = sweep(rig, n_slices, rois=rois, progress=False,
                   scene=f"{scene}:{seed}", source=url)
    return save_stack(out, st)


def parse_seeds(spec: str) -> list[int]:
    """``a:b`` (b exclusive) or ``a,b,c``."""
    try:
        if ":" in spec:
            a, b = spec.split(":")
            return list(range(int(a), int(b)))
        return [int(s) for s in spec.split(",") if s.strip()]
    except ValueError as e:
        raise BadInput(f"--seeds {spec!r}: expected a:b or a,b,c") from e


def main(argv: list[str] | None = None) -> int:
    from ..progress import bar

    ap = argparse.ArgumentParser(prog="python -m hil_af.model.simdata", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--profile", default="sim-default")
    ap.add_argument("--seeds", default="0:50")
    ap.add_argument("--slices", type=int, default=49)
    ap.add_argument("--grid", default="3x4")
    ap.add_argument("--scene", default="cards")
    ap.add_argument("--roi-size", type=int, default=64, help="RoI side in view px (default 64)")
    ap.add_argument("--view", default=None, metavar="HxW", help="view size in px (default: the profile's)")
    a = ap.parse_args(argv)
    if a.roi_size < 8:
        raise SystemExit(f"--roi-size {a.roi_size}: must be at least 8 px")
    view = None
    if a.view is not None:
        try:
            vh, vw = int_pair(a.view)
        except ValueError as e:
            raise SystemExit(f"--view {a.view!r}: expected HxW") from e
        view = (vh, vw)
    grid: tuple[int, int] | str
    if a.grid in ("dense", "cells"):
        grid = a.grid
    else:
        try:
            r, c = int_pair(a.grid)
        except ValueError as e:
            raise SystemExit(f"--grid {a.grid!r}: expected RxC or dense") from e
        grid = (r, c)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    name = Path(a.profile).stem if a.profile.endswith(".toml") else a.profile  # a profile by path: its file name
    for s in bar(parse_seeds(a.seeds), desc=f"sim stacks {name}", unit="stack"):
        p = out / f"{name}-s{s}.npz"
        if not p.exists():
            make_stack(p, a.profile, s, a.slices, grid, a.scene, a.roi_size, view)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
