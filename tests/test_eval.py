"""Evaluation protocol: metric arithmetic on a hand-computed case, and the harness on numpy-made stacks."""

import json

import numpy as np
import pytest

from hil_af.cli import main
from hil_af.errors import BadInput
from hil_af.evaluation import evaluate, format_table, metrics
from synthetic import make_stack


def test_metrics_hand_computed():
    # errors: 0, 1, -2, 4, -5 -> |e| = 0 1 2 4 5
    m = metrics([0, 1, -2, 4, -5], captures=[2, 2, 3, 3, 5], moves=[1, 2, 2, 2, 3], compute_s=0.010, compute_steps=5, failed=1)
    assert m["exact"] == pytest.approx(0.2)
    assert m["le1"] == pytest.approx(0.4)
    assert m["le2"] == pytest.approx(0.6)
    assert m["le4"] == pytest.approx(0.8)
    assert m["mae"] == pytest.approx(12 / 5)
    assert m["rmse"] == pytest.approx(np.sqrt((0 + 1 + 4 + 16 + 25) / 5))
    assert m["captures_mean"] == pytest.approx(3.0)
    assert m["moves_mean"] == pytest.approx(2.0)
    assert m["compute_ms_per_step"] == pytest.approx(2.0)
    assert m["samples"] == 5 and m["failed"] == pytest.approx(0.2)


def test_metrics_without_samples_is_bad_input():
    with pytest.raises(BadInput, match="no samples"):
        metrics([], [], [])


def test_cdaf_on_replayed_stacks_finds_the_truth(tmp_path):
    a = make_stack(tmp_path / "a.npz", seed=1)
    b = make_stack(tmp_path / "b.npz", gts=(1, 12, 5, 7), seed=2)
    r = evaluate([a, b], ["cdaf"])
    assert r["stacks"] == 2 and r["rois"] == 8
    assert r["samples"] == 8 * 13  # every RoI x every start slice
    m = r["methods"]["cdaf"]
    assert m["exact"] >= 0.9 and m["le1"] == 1.0
    assert m["captures_mean"] > 5  # a search, not a lookup
    assert "cdaf" in format_table(r)


def test_eval_command_json_keys(tmp_path):
    make_stack(tmp_path / "a.npz", seed=3)
    out = tmp_path / "eval.json"
    assert main(["eval", "--stacks", str(tmp_path), "--method", "cdaf", "--json", str(out), "--start-stride", "3"]) == 0
    r = json.loads(out.read_text())
    assert set(r) >= {"stacks", "rois", "samples", "methods"}
    assert set(r["methods"]["cdaf"]) >= {"exact", "le1", "le2", "le4", "mae", "rmse", "captures_mean",
                                         "moves_mean", "compute_ms_per_step", "samples"}
    assert r["samples"] == 4 * 5  # 13 start slices at stride 3 -> 0,3,6,9,12


def test_eval_bad_folder_exit_2(tmp_path, capsys):
    assert main(["eval", "--stacks", str(tmp_path / "nope"), "--method", "cdaf"]) == 2
    assert "nope" in capsys.readouterr().err


@pytest.fixture(scope="module")
def sim_stack(tmp_path_factory):
    from hil_af.capture import sweep
    from hil_af.clock import SimClock
    from hil_af.drivers.registry import open_rig
    from hil_af.stacks import save_stack

    path = tmp_path_factory.mktemp("sim") / "wide.npz"
    with open_rig("sim://?seed=9100&profile=sim-wide", clock=SimClock()) as rig:
        save_stack(path, sweep(rig, n_slices=25, progress=False))
    return path


def test_memoised_eval_scores_exactly_like_plain_runs(sim_stack):
    from hil_af.paths import REPO_ROOT

    cal = REPO_ROOT / "calibration/examples/sim-wide"
    kw = dict(calibration=str(cal / "cal.json"), global_calibration=str(cal / "cal-global.json"), start_stride=4)
    fast = evaluate([sim_stack], ["pdaf", "cdaf"], memoise=True, **kw)
    slow = evaluate([sim_stack], ["pdaf", "cdaf"], memoise=False, **kw)
    timing = {"compute_ms_per_step", "timed_steps", "eval_ms_per_step_shared", "eval_cycles_per_s"}
    for m in ("pdaf", "cdaf"):
        a = {k: v for k, v in fast["methods"][m].items() if k not in timing}
        b = {k: v for k, v in slow["methods"][m].items() if k not in timing}
        assert a == b and a["samples"] > 0


def test_per_position_pdaf_beats_global_off_centre_on_sim_wide(sim_stack):
    from hil_af.paths import REPO_ROOT

    cal = REPO_ROOT / "calibration/examples/sim-wide"
    r = evaluate([sim_stack], ["pdaf", "pdaf-global"], calibration=str(cal / "cal.json"),
                 global_calibration=str(cal / "cal-global.json"))
    per, glob = r["methods"]["pdaf"]["off_centre"], r["methods"]["pdaf-global"]["off_centre"]
    assert per["samples"] == glob["samples"] > 0
    assert per["exact"] > glob["exact"] and per["mae"] < glob["mae"]
