"""The evaluation protocol of Choi et al. (ICCV 2023) / Herrmann et al. (CVPR 2020).

For each focal stack, each RoI with known ground truth, and each of the n
start slices: put the lens of a replay rig at the start slice, run one AF
cycle of the real controller, and compare the slice where the lens ends
with the ground truth.  Scores per method: fractions with |error| = 0, <= 1,
<= 2, <= 4 slices, MAE and RMSE in slices, captures and lens moves per
focus, compute per AF step (ms, wall clock, estimator work only), and how
many cycles ended Failed.  A Failed cycle is scored where the lens stopped.

Compute per AF step (``compute_ms_per_step``, the tables' ``ms/step``) is
what a controller on a rig pays: it is timed on cycles that share no work
with other samples.  The scored cycles share estimator results per slice
(``SliceMemo``: the first call for a slice runs every RoI of the stack), so
with ``memoise`` on, a separate timing pass runs a plain controller on every
RoI from ``TIMING_STARTS`` evenly spaced start slices and its time is the
ms/step; the scored cycles' own time, shared work included, is reported
apart as eval throughput (``eval_ms_per_step_shared``, ``eval_cycles_per_s``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .clock import SimClock
from .controller.base import AFState
from .controller.core import Controller
from .controller.methods import check_method
from .errors import BadInput
from .stacks import stack_files  # noqa: F401  (re-exported for the eval command)

TIMING_STARTS = 4  # start slices per RoI timed without shared work when memoising


class SliceMemo:
    """Answers ``predict(frame, rois, *args)`` of a pure estimator from results per (stack, slice, args).

    On a replay rig every frame is one of the stack's n slices, so the first
    call for a slice runs the estimator on ALL the stack's RoIs in one batch,
    and every later call for that slice (other RoIs, other start slices) is a
    lookup.  Results are the estimator's own, so scores are unchanged; only
    the work is shared.  RoIs that are not the stack's fall through to the estimator;
    other attributes (a model's card, a calibration) are the estimator's.
    """

    def __init__(self, inner, stack_rois):
        self.inner = inner
        self.stack_rois = stack_rois  # callable -> int32 [P, 4] of the current stack
        self.cache: dict = {}

    def _key(self, frame, args):
        return (frame.metadata.get("stack"), frame.metadata.get("slice"), args)

    def __call__(self, frame, rois, *args):
        return self.predict(frame, rois, *args)

    def __getattr__(self, name):
        """Every other attribute is the estimator's own: the controller reads its thresholds from
        them (a model's ``card``: pe/pe2's confidence floor; a calibration's ``cal``: pdaf's)."""
        try:
            inner = self.__dict__["inner"]
        except KeyError:  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name) from None
        return getattr(inner, name)

    def predict(self, frame, rois, *args):
        rois = np.asarray(rois).reshape(-1, 4)
        key = self._key(frame, args)
        if key[1] is None:
            return self.inner(frame, rois, *args) if callable(self.inner) and not hasattr(self.inner, "predict") \
                else self.inner.predict(frame, rois, *args)
        if key not in self.cache:
            allr = self.stack_rois()
            run = self.inner.predict if hasattr(self.inner, "predict") else self.inner
            self.cache[key] = (run(frame, allr, *args), {tuple(r): i for i, r in enumerate(allr.tolist())})
        res, index = self.cache[key]
        idx = [index.get(tuple(r)) for r in rois.tolist()]
        if any(i is None for i in idx):
            run = self.inner.predict if hasattr(self.inner, "predict") else self.inner
            return run(frame, rois, *args)
        return _take(res, idx, len(index))


def _take(res, idx: list[int], n: int):
    """Rows ``idx`` of every per-RoI array in ``res`` (an array or a dataclass of arrays)."""
    if isinstance(res, np.ndarray):
        return res[idx]
    vals = {}
    for f in dataclasses.fields(res):
        v = getattr(res, f.name)
        vals[f.name] = v[idx] if isinstance(v, np.ndarray) and v.ndim >= 1 and v.shape[0] == n else v
    return dataclasses.replace(res, **vals)


def memoise_estimators(ctl: Controller, stack_rois) -> None:
    """Route the controller's estimators through SliceMemo caches (eval on replay rigs only)."""
    est = ctl.estimators
    pe, pdaf = est.pe, est.pdaf
    memo: dict = {}

    def pe_memo(step):
        return memo.setdefault(("pe", step), SliceMemo(pe(step), stack_rois))

    def pdaf_memo(kind):
        return memo.setdefault(("pdaf", kind), SliceMemo(pdaf(kind), stack_rois))

    contrast = SliceMemo(est.contrast, stack_rois)
    est.pe, est.pdaf, est.contrast = pe_memo, pdaf_memo, contrast  # type: ignore[method-assign]


@dataclass
class MethodTally:
    errors: list[int] = field(default_factory=list)
    captures: list[int] = field(default_factory=list)
    moves: list[int] = field(default_factory=list)
    failed: int = 0
    compute_s: float = 0.0      # estimator time of cycles without shared work (the rig's cost)
    compute_steps: int = 0
    shared_s: float = 0.0       # estimator time of the scored cycles, shared (memoised) work included
    shared_steps: int = 0
    wall_s: float = 0.0         # wall time of the scored cycles
    cycles: int = 0
    radius: list[float] = field(default_factory=list)  # |RoI centre| on the full plane, normalised


def metrics(errors: Sequence[int] | np.ndarray, captures: Sequence[int] | np.ndarray, moves: Sequence[int] | np.ndarray,
            compute_s: float = 0.0, compute_steps: int = 0, failed: int = 0) -> dict:
    """The CLI.md metric block from per-sample slice errors, capture and move counts."""
    e = np.abs(np.asarray(errors, dtype=np.float64))
    if e.size == 0:
        raise BadInput("no samples to score (no RoI with ground truth?)")
    return {
        "exact": float(np.mean(e == 0)), "le1": float(np.mean(e <= 1)), "le2": float(np.mean(e <= 2)),
        "le4": float(np.mean(e <= 4)), "mae": float(np.mean(e)), "rmse": float(np.sqrt(np.mean(e ** 2))),
        "captures_mean": float(np.mean(captures)), "moves_mean": float(np.mean(moves)),
        "compute_ms_per_step": float(1000 * compute_s / compute_steps) if compute_steps else 0.0,
        "samples": int(e.size), "failed": float(failed / e.size),
    }


def evaluate(stacks: Iterable[str | Path], methods: Sequence[str], *, calibration: str | None = None,
             global_calibration: str | None = None, zncc_calibration: str | None = None, model_dir: str | None = None,
             flatfield: str | None = None, threads: int = 1, start_stride: int = 1,
             progress: bool | None = False, centre_radius: float = 0.35, memoise: bool = True) -> dict:
    """Run the protocol for every method on the same stacks; returns the ``eval --json`` object.

    start_stride: use every k-th start slice (1 = all, the paper's protocol).
    memoise: share estimator results per (slice, RoI) across start slices (same scores, less work);
    ms/step then comes from a timing pass without shared work (module doc).
    centre_radius: RoIs whose centre lies farther than this (normalised full-plane
    radius) also get an ``off_centre`` metric block per method.
    """
    from .drivers.registry import open_rig

    methods = [check_method(m) for m in methods]
    if not methods:
        raise BadInput("no method to evaluate")
    tallies = {m: MethodTally() for m in methods}
    controllers: dict[str, Controller] = {}
    timers: dict[str, Controller] = {}  # plain controllers for the ms/step timing pass

    def controller_on(pool: dict[str, Controller], m: str, rig, memo: bool) -> Controller:
        """The method's controller of ``pool``, made once (memoised or plain) and moved to ``rig``."""
        ctl = pool.get(m)
        if ctl is None:
            ctl = pool[m] = Controller(rig, method=m, calibration=calibration, global_calibration=global_calibration,
                                       zncc_calibration=zncc_calibration, model_dir=model_dir,
                                       flatfield=flatfield, threads=threads)
            if memo:
                memoise_estimators(ctl, lambda: current["rois"])
        else:
            ctl.rig = rig
            ctl._view_hw = None
        return ctl
    current: dict = {}
    n_stacks = n_rois = 0
    files = list(stacks)
    bar = None
    if progress is not False:
        from .progress import bar as progress_bar

        bar = progress_bar(None, progress, total=len(files) * len(methods), desc="eval", unit="stack-method")
    for path in files:
        rig = open_rig(f"replay://{Path(path).resolve()}", clock=SimClock())
        with rig:
            stack = rig.source.stack  # type: ignore[attr-defined]
            current["rois"] = np.asarray(stack.rois)
            positions = rig.slice_positions()
            Hf, Wf = stack.sensor_hw
            y0, x0 = stack.origin
            known = [i for i, g in enumerate(stack.gt_index) if g >= 0]
            n_stacks += 1
            n_rois += len(known)
            for m in methods:
                ctl = controller_on(controllers, m, rig, memoise)
                t = tallies[m]
                t0 = time.perf_counter()
                for i in known:
                    roi = stack.rois[i]
                    cx = 2 * (x0 + roi[0] + roi[2] / 2) / Wf - 1
                    cy = 2 * (y0 + roi[1] + roi[3] / 2) / Hf - 1
                    for k in range(0, len(positions), start_stride):
                        rig.lens.move_to(float(positions[k]))
                        res = ctl.focus(rois=[roi])
                        final = int(np.argmin(np.abs(positions - res.position)))
                        t.errors.append(final - int(stack.gt_index[i]))
                        t.captures.append(res.captures)
                        t.moves.append(res.moves)
                        t.radius.append(float(np.hypot(cx, cy)))
                        t.failed += res.state != AFState.FOCUSED
                        s, n_steps = _compute_of(res)
                        t.shared_s += s
                        t.shared_steps += n_steps
                t.wall_s += time.perf_counter() - t0
                t.cycles += len(known) * len(range(0, len(positions), start_stride))
                if not memoise:
                    t.compute_s, t.compute_steps = t.shared_s, t.shared_steps
                else:  # the rig's cost: a plain controller, nothing shared with other samples
                    plain = controller_on(timers, m, rig, False)
                    every = max(start_stride, -(-len(positions) // TIMING_STARTS))
                    for i in known:
                        for k in range(0, len(positions), every):
                            rig.lens.move_to(float(positions[k]))
                            s, n_steps = _compute_of(plain.focus(rois=[stack.rois[i]]))
                            t.compute_s += s
                            t.compute_steps += n_steps
                if bar:
                    bar.update(1)
    if bar:
        bar.close()
    out: dict = {"stacks": n_stacks, "rois": n_rois, "samples": 0, "methods": {}}
    for m, t in tallies.items():
        block = metrics(t.errors, t.captures, t.moves, t.compute_s, t.compute_steps, t.failed)
        block["timed_steps"] = t.compute_steps
        block["eval_ms_per_step_shared"] = float(1000 * t.shared_s / t.shared_steps) if t.shared_steps else 0.0
        block["eval_cycles_per_s"] = float(t.cycles / t.wall_s) if t.wall_s > 0 else 0.0
        off = np.asarray(t.radius) > centre_radius
        if off.any():
            e = np.asarray(t.errors)[off]
            block["off_centre"] = {k: v for k, v in metrics(e, np.asarray(t.captures)[off], np.asarray(t.moves)[off]).items()
                                   if k in ("exact", "le1", "le2", "le4", "mae", "rmse", "samples")}
        out["methods"][m] = block
        out["samples"] = block["samples"]
    return out


def _compute_of(res) -> tuple[float, int]:
    """(estimator seconds, AF steps) of one focus result: an AF step is one capture's estimator work."""
    steps = int(res.compute_steps)  # type: ignore[attr-defined]
    return res.compute_ms_per_step * steps / 1000, steps  # type: ignore[attr-defined]


def format_table(result: dict) -> str:
    """A text table like the paper's (fractions as percentages); ms/step is the per-step cost on a rig,
    eval throughput (work shared across samples) follows the table."""
    head = f"{'method':<12} {'=0':>6} {'<=1':>6} {'<=2':>6} {'<=4':>6} {'MAE':>6} {'RMSE':>6} {'capt':>5} {'moves':>5} {'ms/step':>8} {'failed':>6}"
    from .text import plural

    lines = [f"{plural(result['stacks'], 'stack')}, {plural(result['rois'], 'RoI')}, "
             f"{plural(result['samples'], 'sample')} per method", head]
    for m, b in result["methods"].items():
        lines.append(
            f"{m:<12} {100 * b['exact']:6.1f} {100 * b['le1']:6.1f} {100 * b['le2']:6.1f} {100 * b['le4']:6.1f} "
            f"{b['mae']:6.2f} {b['rmse']:6.2f} {b['captures_mean']:5.1f} {b['moves_mean']:5.1f} "
            f"{b['compute_ms_per_step']:8.3f} {100 * b['failed']:6.1f}"
        )
    thr = [f"{m} {b['eval_cycles_per_s']:.0f} cycles/s ({b['eval_ms_per_step_shared']:.3f} ms/step shared)"
           for m, b in result["methods"].items() if "eval_cycles_per_s" in b]
    if thr:
        lines.append("eval throughput: " + ", ".join(thr))
    return "\n".join(lines)


def timed_evaluate(*args, **kwargs) -> tuple[dict, float]:
    t = time.perf_counter()
    r = evaluate(*args, **kwargs)
    return r, time.perf_counter() - t
