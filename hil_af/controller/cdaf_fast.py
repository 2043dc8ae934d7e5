"""``cdaf-fast``: a contrast search that needs far fewer frames than libcamera's scan.

Three ideas, each measured in benchmarks/bench_cdaf.py:

1. **Coarse bracketing at 2 dioptres.**  The main lobe of a contrast curve
   is about 2 dioptres wide at half height on the Pi lenses hil-af models
   (blur grows ~3 px per dioptre), so a 2-dioptre grid always puts one
   sample within 1 dioptre of the peak, where the contrast is several times
   the tails (side lobes of the defocus disc included).  The grid is walked
   outward from an anchor (the end of the range nearer the lens, or a
   defocus estimate when the caller has one) and the walk stops as soon as
   the best sample is bracketed: both grid neighbours measured and below
   ``drop`` x its contrast.
2. **Model-guided refinement.**  Near the peak the log of the focus measure
   is close to a parabola in dioptres (a Gaussian-like curve), so the vertex
   of the parabola through three log-contrast samples predicts the peak
   (the model-guided step of Sliwinski & Wachel, 2013, in place of a golden
   section).  Two samples at +-``refine`` dioptres around the best coarse
   sample give the first prediction; one sample at the prediction and a
   final three-point fit give the answer.
3. **Settling only as long as the actuator needs.**  The session runs with
   ``settle="model"``: after a step of delta codes the next frame waits
   ``tau * ln(delta / tolerance)`` (hil_af.controller.settle), not a fixed
   number of frames.

Fails (no peak) when the best sample is under ``min_peak_ratio`` x the median.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FocusFailed
from .af_range import DioptreScale


@dataclass
class FastSearchParams:
    coarse_step: float = 2.0     # dioptres between coarse samples
    refine: float = 0.6          # dioptres: first refinement samples at best +- this
    drop: float = 0.5            # a coarse neighbour below this x the best brackets the peak
    min_peak_ratio: float = 1.15  # best / median contrast below this: no peak (Failed)


def log_parabola_vertex(xs, cs) -> float | None:
    """Vertex x of the parabola through (x, ln c) of three samples, or None when it opens upward."""
    x = np.asarray(xs, dtype=np.float64)
    y = np.log(np.maximum(np.asarray(cs, dtype=np.float64), 1e-12))
    a, b, _ = np.polyfit(x, y, 2)
    if not np.isfinite(a) or a >= 0:
        return None
    return float(-b / (2 * a))


def _grid(lo: float, hi: float, step: float) -> list[float]:
    n = max(1, int(np.ceil((hi - lo) / step - 1e-9)))
    return [float(v) for v in np.linspace(lo, hi, n + 1)]


def run_cdaf_fast(session, ctx, rois, weights, params: FastSearchParams | None = None, hint: float | None = None):
    """Coarse bracketing + log-parabola refinement; ``hint``: a defocus estimate (native units) to start from."""
    from .methods import MethodOutcome

    p = params or FastSearchParams()
    scale = DioptreScale(session.lens_map, session.positions)
    lo, hi = sorted(scale.to_dioptres(x) for x in (session.positions[0], session.positions[-1]))
    measured: dict[float, float] = {}

    def measure(d: float) -> float:
        d = float(np.clip(d, lo, hi))
        key = round(d, 4)
        if key not in measured:
            session.move_to(scale.to_position(d))
            frame = session.capture()
            with session.compute():
                measured[key] = float(np.dot(weights, ctx.contrast(frame, rois)))
            session.trace.append({"t": session.elapsed_s(), "cdaf_fast": d, "contrast": measured[key]})
        return measured[key]

    grid = _grid(lo, hi, p.coarse_step)
    here = scale.to_dioptres(session.position if hint is None else hint)
    if hint is None:  # walk from the nearer end: the whole range in one direction
        anchor = lo if abs(here - lo) <= abs(hi - here) else hi
    else:
        anchor = float(np.clip(here, lo, hi))
    order = sorted(range(len(grid)), key=lambda i: (abs(grid[i] - anchor), grid[i]))
    for i in order:
        measure(grid[i])
        best = max(range(len(grid)), key=lambda k: measured.get(round(grid[k], 4), -1.0))
        cb = measured[round(grid[best], 4)]
        nbrs = [grid[k] for k in (best - 1, best + 1) if 0 <= k < len(grid)]
        if all(round(g, 4) in measured and measured[round(g, 4)] < p.drop * cb for g in nbrs):
            break
    coarse = list(measured.values())
    if cb < p.min_peak_ratio * float(np.median(coarse)):
        raise FocusFailed(f"no contrast peak: best/median contrast {cb / max(float(np.median(coarse)), 1e-12):.3f} "
                          f"< {p.min_peak_ratio} over {len(coarse)} coarse samples (flat or dark RoI)")
    b = grid[best]
    h = min(p.refine, p.coarse_step / 2)
    xs = [x for x in (b - h, b, b + h) if lo - 1e-9 <= x <= hi + 1e-9]
    for x in xs:
        measure(x)
    guess = _fit(measured, b, h, lo, hi)
    measure(guess)
    final = _fit(measured, guess, h, lo, hi)
    conf = float(np.clip((cb / max(float(np.median(coarse)), 1e-12) - 1.0) / 2.0, 0.0, 1.0))
    return MethodOutcome(scale.to_position(final), conf)


def _fit(measured: dict[float, float], centre: float, h: float, lo: float, hi: float) -> float:
    """Peak estimate from the best sample within 1.5 h of ``centre`` and its nearest neighbour on each side."""
    pts = sorted(measured.items())
    near = [k for k, (x, _) in enumerate(pts) if abs(x - centre) <= 1.5 * h + 1e-9]
    if not near:
        return centre
    k = max(near, key=lambda j: pts[j][1])
    xb = pts[k][0]
    if 0 < k < len(pts) - 1:
        trio = pts[k - 1: k + 2]
        v = log_parabola_vertex([t[0] for t in trio], [t[1] for t in trio])
        span = (trio[0][0], trio[2][0])
        if v is not None:
            return float(np.clip(v, *span))
    return float(np.clip(xb, lo, hi))
