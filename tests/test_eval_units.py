"""The evaluation harness's own rules, each against a value written from its definition.

``format_table`` from its layout (docstring and header), ``metrics`` on hand-made errors,
``SliceMemo``/``memoise_estimators`` with stand-in estimators, and ``evaluate``'s counting
rules on a numpy-made stack (tests/synthetic.py) with the model replaced at the
``onnxruntime.InferenceSession.run`` boundary by a stand-in whose answer is known for every
lens slice, and the clock replaced at the ``time.perf_counter`` boundary by a virtual one that
only the stand-in model advances (1 ms per call + 1 ms per batch row), so every figure of the
``eval --json`` object, timing included, is known exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

from hil_af.errors import BadInput
from hil_af.evaluation import SliceMemo, evaluate, format_table, memoise_estimators, metrics, timed_evaluate
from hil_af.paths import models_dir
from synthetic import make_stack

needs_model = pytest.mark.skipif(not (models_dir() / "step1.onnx").exists(), reason="no shipped model in models/")

# --------------------------------------------------------------------------- format_table


def test_format_table_layout_percentages_and_throughput_line():
    """Header line, then one row per method: name left in 12, the four fractions as percentages
    (1 decimal, width 6), MAE/RMSE (2 decimals, 6), captures/moves (1 decimal, 5), ms/step
    (3 decimals, 8), failed as a percentage (1 decimal, 6), one space between columns; then the
    eval throughput of the methods that report it."""
    pe2 = dict(exact=0.25, le1=0.5, le2=0.625, le4=0.875, mae=1.5, rmse=2.25, captures_mean=2.0, moves_mean=1.5,
               compute_ms_per_step=3.25, failed=0.125, eval_cycles_per_s=812.4, eval_ms_per_step_shared=0.5)
    cdaf = dict(exact=0.5, le1=0.75, le2=1.0, le4=1.0, mae=0.75, rmse=1.0, captures_mean=9.0, moves_mean=8.5,
                compute_ms_per_step=0.125, failed=0.25)
    hybrid = dict(pe2, mae=0.5, eval_cycles_per_s=95.0, eval_ms_per_step_shared=10.25)
    text = format_table({"stacks": 2, "rois": 5, "samples": 40, "methods": {"pe2": pe2, "cdaf": cdaf, "hybrid": hybrid}})
    assert text.split("\n") == [
        "2 stacks, 5 RoIs, 40 samples per method",
        "method           =0    <=1    <=2    <=4    MAE   RMSE  capt moves  ms/step failed",
        "pe2            25.0   50.0   62.5   87.5   1.50   2.25   2.0   1.5    3.250   12.5",
        "cdaf           50.0   75.0  100.0  100.0   0.75   1.00   9.0   8.5    0.125   25.0",
        "hybrid         25.0   50.0   62.5   87.5   0.50   2.25   2.0   1.5    3.250   12.5",
        "eval throughput: pe2 812 cycles/s (0.500 ms/step shared), hybrid 95 cycles/s (10.250 ms/step shared)",
    ]


def test_format_table_without_throughput_has_no_throughput_line():
    b = dict(exact=1.0, le1=1.0, le2=1.0, le4=1.0, mae=0.0, rmse=0.0, captures_mean=1.0, moves_mean=0.0,
             compute_ms_per_step=0.0, failed=0.0)
    text = format_table({"stacks": 1, "rois": 1, "samples": 1, "methods": {"pe": b}})
    assert text.split("\n") == [
        "1 stack, 1 RoI, 1 sample per method",
        "method           =0    <=1    <=2    <=4    MAE   RMSE  capt moves  ms/step failed",
        "pe            100.0  100.0  100.0  100.0   0.00   0.00   1.0   0.0    0.000    0.0",
    ]


# --------------------------------------------------------------------------- metrics


def test_metrics_defaults_no_time_no_steps_no_failures():
    """ms/step is 0 unless steps were timed (time without steps, or steps without time, give 0);
    ``failed`` defaults to none."""
    m = metrics([1, -1], [2, 2], [1, 1], compute_s=0.5)
    assert m["compute_ms_per_step"] == 0.0 and m["failed"] == 0.0
    assert metrics([1], [1], [1], compute_steps=4)["compute_ms_per_step"] == 0.0


def test_metrics_of_one_sample_and_of_int16_errors():
    """One sample is enough; errors of a narrow integer type (stacks store gt as int16) are scored
    as numbers: |200| and 200^2 do not wrap around."""
    m = metrics([3], [4], [2], compute_s=0.006, compute_steps=3, failed=1)
    assert (m["samples"], m["exact"], m["le4"], m["mae"], m["rmse"]) == (1, 0.0, 1.0, 3.0, 3.0)
    assert m["compute_ms_per_step"] == pytest.approx(2.0) and m["failed"] == 1.0
    m = metrics(np.array([200, -200], np.int16), [1, 1], [0, 0])
    assert m["mae"] == 200.0 and m["rmse"] == 200.0


def test_metrics_without_samples_message():
    with pytest.raises(BadInput, match=r"^no samples to score \(no RoI with ground truth\?\)$"):
        metrics([], [], [])


# --------------------------------------------------------------------------- SliceMemo


STACK_ROIS = np.array([[0, 0, 4, 4], [10, 0, 4, 4], [20, 2, 4, 4]], np.int32)


def _frame(stack="a", k=3):
    """A replay frame as SliceMemo sees it: only its metadata (stack path and slice index)."""
    return SimpleNamespace(metadata={} if k is None else {"stack": stack, "slice": k})


class Spy:
    """A pure estimator: per RoI, x + 100 * slice + 1000 * sum(args); records every call."""

    def __init__(self):
        self.calls: list[tuple] = []

    def value(self, frame, rois, args):
        k = frame.metadata.get("slice", 0)
        return np.asarray(rois)[:, 0] + 100.0 * k + 1000.0 * sum(args)

    def __call__(self, frame, rois, *args):
        self.calls.append((frame.metadata.get("stack"), frame.metadata.get("slice"), np.asarray(rois).tolist(), args))
        return self.value(frame, rois, args)


class PredictorSpy(Spy):
    """An estimator object: ``predict`` is the estimator; calling the object itself is wrong."""

    def predict(self, frame, rois, *args):
        return Spy.__call__(self, frame, rois, *args)

    def __call__(self, frame, rois, *args):  # pragma: no cover - reached only by a broken memo
        raise AssertionError("SliceMemo must call predict() of an estimator object")


@pytest.mark.parametrize("kind", [Spy, PredictorSpy])
def test_slice_memo_runs_every_stack_roi_once_per_slice_and_args_then_looks_up(kind):
    inner = kind()
    memo = SliceMemo(inner, lambda: STACK_ROIS)
    np.testing.assert_array_equal(memo(_frame(k=3), [20, 2, 4, 4], 7), [20 + 300 + 7000])  # flat (x, y, w, h)
    assert inner.calls == [("a", 3, STACK_ROIS.tolist(), (7,))]  # all the stack's RoIs, once
    np.testing.assert_array_equal(memo.predict(_frame(k=3), [[10, 0, 4, 4], [0, 0, 4, 4]], 7), [7310, 7300])
    assert len(inner.calls) == 1  # a lookup
    memo(_frame(k=4), STACK_ROIS[:1], 7)      # another slice
    memo(_frame("b", k=3), STACK_ROIS[:1], 7)  # another stack
    memo(_frame(k=3), STACK_ROIS[:1], 8)      # other arguments
    assert [c[:2] + (c[3],) for c in inner.calls] == [("a", 3, (7,)), ("a", 4, (7,)), ("b", 3, (7,)), ("a", 3, (8,))]
    np.testing.assert_array_equal(memo(_frame(k=4), STACK_ROIS, 7), [7400, 7410, 7420])
    assert len(inner.calls) == 4


@pytest.mark.parametrize("kind", [Spy, PredictorSpy])
def test_slice_memo_falls_through_without_a_slice_or_for_rois_not_of_the_stack(kind):
    inner = kind()
    memo = SliceMemo(inner, lambda: STACK_ROIS)
    np.testing.assert_array_equal(memo(_frame(k=None), [[20, 2, 4, 4]], 5), [5020])
    assert inner.calls == [(None, None, [[20, 2, 4, 4]], (5,))]
    memo(_frame(k=None), [[20, 2, 4, 4]], 5)
    assert len(inner.calls) == 2  # no slice, no cache
    other = [[0, 0, 4, 4], [99, 0, 4, 4]]
    np.testing.assert_array_equal(memo(_frame(k=2), other, 5), [5200, 5299])
    assert inner.calls[2:] == [("a", 2, STACK_ROIS.tolist(), (5,)), ("a", 2, other, (5,))]


def test_slice_memo_shows_the_estimators_own_attributes():
    """The controller reads thresholds from its estimator (a model's ``card``, a calibration's ``cal``):
    through the memo they are the estimator's; an attribute the estimator lacks is missing."""
    import copy

    inner = PredictorSpy()
    inner.card = {"controller": {"pe": {"min_confidence": 0.26}}}  # type: ignore[attr-defined]
    memo = SliceMemo(inner, lambda: STACK_ROIS)
    assert memo.card is inner.card and getattr(memo, "cal", "none") == "none"
    assert getattr(SliceMemo(Spy(), lambda: STACK_ROIS), "card", None) is None
    assert copy.copy(memo).card is inner.card
    with pytest.raises(AttributeError, match="^card$"):
        SliceMemo.__new__(SliceMemo).card  # not set up yet: missing, by name (no recursion)


@dataclass
class Result:
    value: np.ndarray      # per RoI [P]
    pairs: np.ndarray      # per RoI [P, 2]
    grid: np.ndarray       # not per RoI: first axis is not P
    scale: np.ndarray      # 0-d
    label: str


def test_slice_memo_takes_the_rows_of_per_roi_fields_of_a_dataclass_result():
    def est(frame, rois):
        r = np.asarray(rois)
        return Result(value=r[:, 0].astype(float), pairs=r[:, :2].copy(), grid=np.arange(5.0), scale=np.array(2.5),
                      label="xcorr")

    memo = SliceMemo(est, lambda: STACK_ROIS)
    res = memo(_frame(), [[20, 2, 4, 4], [0, 0, 4, 4]])
    np.testing.assert_array_equal(res.value, [20.0, 0.0])
    np.testing.assert_array_equal(res.pairs, [[20, 2], [0, 0]])
    np.testing.assert_array_equal(res.grid, np.arange(5.0))
    assert float(res.scale) == 2.5 and res.label == "xcorr"


def test_memoise_estimators_wraps_each_model_step_and_calibration_once():
    pe = {1: PredictorSpy(), 2: PredictorSpy()}
    pdaf = {False: PredictorSpy(), True: PredictorSpy(), "zncc": PredictorSpy()}
    contrast = Spy()
    est = SimpleNamespace(pe=pe.__getitem__, pdaf=pdaf.__getitem__, contrast=contrast)

    def rois():
        return STACK_ROIS

    memoise_estimators(SimpleNamespace(estimators=est), rois)
    for fn, inner in ((est.pe, pe), (est.pdaf, pdaf)):
        for key, predictor in inner.items():
            m = fn(key)
            assert isinstance(m, SliceMemo) and m.inner is predictor and m.stack_rois is rois
            assert fn(key) is m  # one memo (one cache) per model step / calibration
    assert isinstance(est.contrast, SliceMemo) and est.contrast.inner is contrast and est.contrast.stack_rois is rois
    est.contrast(_frame(), STACK_ROIS[:1])
    est.contrast(_frame(), STACK_ROIS[1:])
    assert len(contrast.calls) == 1


# --------------------------------------------------------------------------- evaluate's counting rules

N = 13                 # slices of the test stacks
BINS = 49              # the shipped model's output bins (models/card.json); bin 4k is slice k of 13
GTS = (0, 5, 12, -1, 8, 3)  # RoI 3 has no ground truth
# RoIs inside make_stack's textured blocks (x 8+40i..40+40i, y 8..40), not square, on a
# 96 x 320 sensor with the views at origin (32, 52): centres (normalised full plane, module doc of
# evaluation): RoI 0 (-0.5, 0) and RoI 4 (0.5, 0) at radius exactly 0.5; RoI 5 (0.725, 1/6) off
# centre; RoIs 1 and 2 at radius 0.39 and 0.09.
ROIS = [(16, 8, 24, 16), (48, 16, 24, 24), (88, 8, 32, 24), (128, 8, 32, 32), (176, 8, 24, 16), (208, 8, 32, 32)]
ORIGIN, SENSOR = (32, 52), (96, 320)


def final_slice(k: int) -> int:
    """Where the stand-in model leaves pe's lens for start slice k: slices 1, 5, 9 get a two-peaked
    (slices 0 and 12) answer, whose confidence is ~0: Failed, the lens rests at the mean, slice 6;
    slices 3, 7, 11 are answered "one slice down"; every other slice "in focus here"."""
    return 6 if k % 4 == 1 else k - 1 if k % 4 == 3 else k


class VirtualClock:
    """time.perf_counter stand-in: advances only when the stand-in model runs."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def standin(monkeypatch):
    """The model at the onnxruntime boundary (answer by the lens-PE plane, channel 4 = k/(n-1)),
    and the virtual clock; returns a record of batch sizes, sessions and their thread counts."""
    import onnxruntime as ort

    clock = VirtualClock()
    seen = SimpleNamespace(batches=[], threads=[], clock=clock, sleeps=[], centres=[])
    real_init = ort.InferenceSession.__init__

    def init(self, path, sess_options=None, *a, **kw):
        seen.threads.append(sess_options.intra_op_num_threads)
        real_init(self, path, sess_options, *a, **kw)

    def run(self, output_names, feeds):
        x = next(iter(feeds.values()))
        ks = np.rint(x[:, 4].mean(axis=(1, 2)) * (N - 1)).astype(int)
        logits = np.zeros((len(ks), BINS), np.float32)
        for row, k in enumerate(ks):
            if k % 4 == 1:
                logits[row, [0, BINS - 1]] = 30.0
            else:
                logits[row, 4 * final_slice(k)] = 30.0
        seen.batches.append(len(ks))
        seen.centres.append(x[:, 2:4].mean(axis=(2, 3)))  # RoI-PE x, y planes: the RoI centre on the sensor
        clock.t += 0.001 * (1 + len(ks))
        return [logits]

    monkeypatch.setattr(ort.InferenceSession, "__init__", init)
    monkeypatch.setattr(ort.InferenceSession, "run", run)
    monkeypatch.setattr(time, "perf_counter", clock)
    monkeypatch.setattr(time, "sleep", seen.sleeps.append)  # replays run on a simulated clock: never called
    wall = iter(range(0, 10**9, 100))  # and real time, jumping 100 s a reading, must not reach the cycles' budgets
    monkeypatch.setattr(time, "monotonic", lambda: float(next(wall)))
    return seen


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from hil_af.stacks import load_stack, save_stack

    d = tmp_path_factory.mktemp("units")
    st = load_stack(make_stack(d / "raw.npz", n=N, gts=GTS, seed=11))
    st.rois = np.array(ROIS, np.int32)  # type: ignore[misc]
    st.origin, st.sensor_hw = ORIGIN, SENSOR  # type: ignore[misc]
    return save_stack(d / "stack.npz", st)


def expected(gts, starts):
    """The metric block from the definition: errors final - gt over every (RoI, start slice)."""
    e = np.array([final_slice(k) - g for g in gts for k in starts], float)
    a = np.abs(e)
    failed = sum(k % 4 == 1 for k in starts) * len(gts)
    moves = [int(final_slice(k) != k) for g in gts for k in starts]
    return {"exact": np.mean(a == 0), "le1": np.mean(a <= 1), "le2": np.mean(a <= 2), "le4": np.mean(a <= 4),
            "mae": a.mean(), "rmse": np.sqrt(np.mean(a ** 2)), "samples": e.size, "failed": failed / e.size,
            "captures_mean": 1.0, "moves_mean": np.mean(moves)}


@needs_model
def test_eval_scores_every_start_slice_every_known_roi_failures_where_the_lens_stopped(stack, standin, capsys):
    """One stack, pe, defaults (every start slice, memoised, no progress bar): every RoI with
    ground truth (gt 0 and n-1 included, gt -1 skipped) x every start slice 0..12 is one sample;
    a Failed cycle counts in ``failed`` and is scored where its lens stopped; one capture per
    cycle; the off-centre block holds only the RoIs farther than ``centre_radius`` (here 0.5:
    RoIs at exactly 0.5 are not) from the sensor centre."""
    r = evaluate([stack], ["pe"], centre_radius=0.5)
    known = [g for g in GTS if g >= 0]
    m = r["methods"]["pe"]
    want = expected(known, range(N))
    assert set(r) == {"stacks", "rois", "samples", "methods"} and list(r["methods"]) == ["pe"]
    assert (r["stacks"], r["rois"], r["samples"]) == (1, 5, 5 * N)
    for key, value in want.items():
        assert m[key] == pytest.approx(value), key
    off = m["off_centre"]
    assert set(off) == {"exact", "le1", "le2", "le4", "mae", "rmse", "samples"}
    for key in off:
        assert off[key] == pytest.approx(expected([3], range(N))[key]), key  # RoI 5 only (gt 3)
    # ms/step: the timing pass, a plain controller on every known RoI from starts 0, 4, 8, 12
    # (ceil(13 / TIMING_STARTS) = 4 apart): 20 steps, one batch-1 model call (2 ms) each
    assert m["timed_steps"] == 20 and m["compute_ms_per_step"] == pytest.approx(2.0)
    # the scored cycles share work: one batch of all 6 RoIs per slice, 13 x 7 ms over 65 steps
    assert m["eval_ms_per_step_shared"] == pytest.approx(13 * 7 / 65)
    assert m["eval_cycles_per_s"] == pytest.approx(65 / 0.091)
    assert standin.batches.count(6) == N and standin.batches.count(1) == 20 and len(standin.batches) == N + 20
    # ... each timed cycle on its own RoI (centres from the geometry above), 4 starts each
    # (the windows the 64 px model reads: each RoI grown about its centre, shifted into the view)
    from hil_af.model.encoding import model_windows
    from hil_af.stacks import load_stack

    timed = sorted(c[0].tolist() for c, b in zip(standin.centres, standin.batches) if b == 1)
    wins = model_windows(np.array(ROIS)[[0, 1, 2, 4, 5]], 64, load_stack(stack).view_hw)
    cx = 2 * (wins[:, 0] + wins[:, 2] / 2 + ORIGIN[1]) / SENSOR[1] - 1
    cy = 2 * (wins[:, 1] + wins[:, 3] / 2 + ORIGIN[0]) / SENSOR[0] - 1
    want = sorted(list(zip(cx.tolist(), cy.tolist())) * 4)
    np.testing.assert_allclose(timed, want, atol=1e-6)
    own = sorted([(-0.5, 0.0), (-0.3, 0.25), (-0.025, 1 / 12), (0.5, 0.0), (0.725, 1 / 6)] * 4)  # the RoIs' centres
    np.testing.assert_allclose(want, own, atol=0.06)  # the windows are centred on them but for the shift into the view
    assert standin.threads == [1, 1]  # one model session for the scoring, one for the timing pass
    assert capsys.readouterr().err == "" and standin.sleeps == []


@needs_model
def test_eval_default_centre_radius_is_0_35(stack, standin):
    """RoIs 0 and 4 (radius 0.5) and 1 (0.39) are off centre at the default 0.35; RoI 2 (0.09) is not."""
    off = evaluate([stack], ["pe"])["methods"]["pe"]["off_centre"]
    assert off["samples"] == 4 * N and off["mae"] == pytest.approx(expected([0, 5, 8, 3], range(N))["mae"])


@needs_model
def test_eval_without_memo_times_the_scored_cycles_themselves(stack, standin):
    m = evaluate([stack], ["pe"], memoise=False, start_stride=5, centre_radius=0.7)["methods"]["pe"]
    want = expected([0, 5, 12, 8, 3], (0, 5, 10))
    assert m["samples"] == 15 and m["failed"] == pytest.approx(want["failed"]) and m["mae"] == pytest.approx(want["mae"])
    assert m["timed_steps"] == 15 and standin.batches == [1] * 15
    assert m["compute_ms_per_step"] == pytest.approx(2.0) and m["eval_ms_per_step_shared"] == pytest.approx(2.0)
    assert m["eval_cycles_per_s"] == pytest.approx(15 / 0.030)
    assert m["off_centre"]["samples"] == 3  # RoI 5 (radius 0.74) only


@needs_model
def test_eval_ms_per_step_divides_by_steps_of_two_step_cycles(stack, standin):
    """pe2 takes two AF steps a cycle (step-1 and step-2 model, 2 ms each here): ms/step is the
    cycle's estimator time over its steps, 2.0, not per cycle.  From starts 0, 4, 8, 12 both steps
    answer "in focus here": no move, two captures a cycle."""
    m = evaluate([stack], ["pe2"], memoise=False, start_stride=4)["methods"]["pe2"]
    assert m["samples"] == 20 and m["timed_steps"] == 40 and standin.batches == [1] * 40
    assert m["compute_ms_per_step"] == pytest.approx(2.0) and m["eval_ms_per_step_shared"] == pytest.approx(2.0)
    assert (m["captures_mean"], m["moves_mean"], m["failed"]) == (2.0, 0.0, 0.0)
    assert m["mae"] == pytest.approx(expected([0, 5, 12, 8, 3], (0, 4, 8, 12))["mae"])


@needs_model
def test_eval_timing_pass_takes_the_start_stride_when_it_is_coarser(stack, standin):
    """Start stride 5 (starts 0, 5, 10) is coarser than 13 / TIMING_STARTS: the timing pass uses it."""
    m = evaluate([stack], ["pe"], start_stride=5)["methods"]["pe"]
    assert m["samples"] == 15 and m["timed_steps"] == 15 and standin.batches.count(1) == 15
    assert m["compute_ms_per_step"] == pytest.approx(2.0)
    assert m["eval_ms_per_step_shared"] == pytest.approx(3 * 7 / 15)  # 3 slices, one batch of 6 each


@needs_model
def test_eval_over_two_stacks_counts_both_and_keeps_one_controller(tmp_path, stack, standin, capsys):
    """Stacks and RoIs add up over the stacks; the controllers (and their model sessions) are made
    once per method and moved to each stack's rig; the progress bar counts stack x method."""
    second = make_stack(tmp_path / "second.npz", n=N, gts=(2, 10), size=32, seed=12)  # views 48 x 88
    r = evaluate([stack, second], ["pe"], start_stride=4, threads=3, progress=True)
    m = r["methods"]["pe"]
    assert (r["stacks"], r["rois"], r["samples"]) == (2, 7, 7 * 4)
    assert m["mae"] == pytest.approx(expected([0, 5, 12, 8, 3, 2, 10], (0, 4, 8, 12))["mae"])
    # scored: 4 slices x (6 + 1) ms on the first stack, 4 x (2 + 1) ms on the second, 28 cycles;
    # timed: starts 0, 4, 8, 12 on both stacks (7 RoIs), 2 ms each
    assert m["eval_cycles_per_s"] == pytest.approx(28 / 0.040) and m["eval_ms_per_step_shared"] == pytest.approx(40 / 28)
    assert m["timed_steps"] == 28 and m["compute_ms_per_step"] == pytest.approx(2.0)
    assert standin.threads == [3, 3]
    assert sorted(set(standin.batches)) == [1, 2, 6]  # each stack's memo batch: its own RoIs
    err = capsys.readouterr().err
    import re

    assert re.match(r"eval: 100%\|.*\| 2/2 \[", err.split("\r")[-1])  # tqdm's last state: "eval: 100%|...| 2/2 [..."
    assert re.search(r"stack-method/s\]|s/stack-method\]", err)
    assert re.findall(r"\b(\d+)/2\b", err) and max(int(n) for n in re.findall(r"\b(\d+)/2\b", err)) == 2


@needs_model
def test_timed_evaluate_returns_the_result_and_its_seconds(stack, standin):
    r, seconds = timed_evaluate([stack], ["pe"], start_stride=6)
    # starts 0, 6, 12: 3 batches of 6 (7 ms each); timing: 5 RoIs x starts 0, 6, 12 (stride 6 > 4), 2 ms each
    assert r["samples"] == 15 and seconds == pytest.approx(3 * 0.007 + 15 * 0.002)


@needs_model
def test_eval_of_cycles_that_never_reach_the_model(tmp_path, stack, standin):
    """Black frames: every capture retried twice, then Failed where the lens started; no AF step
    was timed, so ms/step, the shared ms/step and cycles/s (no time passed) are all 0."""
    from hil_af.stacks import load_stack, save_stack

    st = load_stack(stack)
    st.left[:] = 0
    st.right[:] = 0
    m = evaluate([save_stack(tmp_path / "black.npz", st)], ["pe"], start_stride=4)["methods"]["pe"]
    want = expected([0, 5, 12, 8, 3], (0, 4, 8, 12))  # (final_slice(k) = k for these starts)
    assert m["samples"] == 20 and m["failed"] == 1.0 and m["mae"] == pytest.approx(want["mae"])
    assert m["captures_mean"] == 3.0 and m["moves_mean"] == 0.0 and standin.batches == []
    assert (m["timed_steps"], m["compute_ms_per_step"], m["eval_ms_per_step_shared"], m["eval_cycles_per_s"]) == (0, 0.0, 0.0, 0.0)


# --------------------------------------------------------------------------- arguments


def test_eval_needs_a_method(stack):
    with pytest.raises(BadInput, match="^no method to evaluate$"):
        evaluate([stack], [])
    with pytest.raises(BadInput, match="unknown AF method 'pee'"):
        evaluate([stack], ["pee"])


@needs_model
def test_eval_passes_the_model_dir_to_the_controller(tmp_path, stack):
    with pytest.raises(BadInput, match=f"model card {tmp_path / 'none'}"):
        evaluate([stack], ["pe"], model_dir=str(tmp_path / "none"))


@pytest.mark.parametrize("method, key", [("pdaf", "calibration"), ("pdaf-global", "global_calibration"),
                                         ("zncc2", "zncc_calibration")])
def test_eval_passes_each_calibration_to_the_controller(tmp_path, stack, method, key):
    missing = tmp_path / f"{key}.json"
    with pytest.raises(BadInput, match=str(missing)):
        evaluate([stack], [method], **{key: str(missing)})


def test_eval_passes_the_flat_field_to_the_controller(tmp_path, stack):
    from hil_af.paths import REPO_ROOT

    missing = tmp_path / "flat.npz"
    with pytest.raises(BadInput, match=str(missing)):
        evaluate([stack], ["pdaf"], calibration=str(REPO_ROOT / "calibration/examples/sim-wide/cal.json"),
                 flatfield=str(missing))



@needs_model
@pytest.mark.parametrize("memoise", [True, False])
def test_memoised_eval_fails_pe_cycles_at_the_model_cards_confidence_floor(stack, monkeypatch, memoise):
    """The memo must not change what the controller decides: pe reads its Failed floor from the
    model's card (``controller.pe.min_confidence``, 0.26 for the shipped model), through the
    estimator it is given.  A stand-in model answering with confidence 0.23 (mass 0.23 at slice 6,
    0.385 at each end) must fail every cycle, memoised or not (the default floor, 0.2, would pass it)."""
    import json

    import onnxruntime as ort

    floor = json.loads((models_dir() / "card.json").read_text())["controller"]["pe"]["min_confidence"]
    assert 0.23 < floor
    p = np.full(BINS, 1e-12)
    p[0] = p[BINS - 1] = 0.385
    p[24] = 0.23

    def run(self, output_names, feeds):
        x = next(iter(feeds.values()))
        return [np.tile(np.log(p).astype(np.float32), (x.shape[0], 1))]

    monkeypatch.setattr(ort.InferenceSession, "run", run)
    m = evaluate([stack], ["pe"], start_stride=6, memoise=memoise)["methods"]["pe"]
    assert m["samples"] == 15 and m["failed"] == 1.0
    assert m["mae"] == pytest.approx(np.mean(np.abs(6 - np.repeat([0, 5, 12, 8, 3], 3))))
