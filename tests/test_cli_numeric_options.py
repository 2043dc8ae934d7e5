"""Numeric options that cannot mean anything are bad input: exit 2 and one stderr line naming the option.

docs/cli.md "Conventions": 0 success, 1 the job ran but failed, 2 bad input.  Before these
checks `eval --start-stride 0` died in a traceback (range() step 0), `--start-stride -1` said
"no samples to score", `focus --max-steps 0` and `--time-budget -1` ran a cycle that ended
Failed (exit 1, "step limit reached (0 captures)"), `--threads -2` was silently taken as 1,
and `calibrate fit --min-confidence nan` blamed the stacks for having "only 0 measurements".
Also here: `--slices` above what a stack file may hold, and `eval` without stacks.
"""

from __future__ import annotations

import pytest

from hil_af.cli import main
from synthetic import make_stack

SIM = "sim://?seed=1"


def _one_line_naming(capsys, option: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("hil-af ") and ": error: " in err and option in err, err
    return err


@pytest.fixture(scope="module")
def tiny_stack(tmp_path_factory):
    path = tmp_path_factory.mktemp("stacks") / "s.npz"
    make_stack(path, n=9, gts=(2, 5), size=32)
    return path


@pytest.mark.parametrize("stride", ["0", "-1", "-4"])
def test_eval_start_stride_below_1(stride, tiny_stack, capsys):
    assert main(["eval", "--stacks", str(tiny_stack), "--method", "cdaf", "--start-stride", stride]) == 2
    _one_line_naming(capsys, "--start-stride")


def test_eval_start_stride_1_still_scores_every_start(tiny_stack, capsys):
    # 2 RoIs with truth x 9 start slices = 18 samples (the protocol's count by definition)
    assert main(["eval", "--stacks", str(tiny_stack), "--method", "cdaf", "--start-stride", "1", "--json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["samples"] == 18


@pytest.mark.parametrize("argv", [
    ["--max-steps", "0"],
    ["--max-steps", "-1"],
    ["--time-budget", "0"],
    ["--time-budget", "-1"],
    ["--time-budget", "nan"],
    ["--time-budget", "inf"],
    ["--threads", "0"],
    ["--threads", "-2"],
])
def test_focus_limits_that_cannot_be_met_are_bad_input(argv, capsys):
    assert main(["focus", SIM, "--clock", "sim", "--method", "cdaf", *argv]) == 2
    _one_line_naming(capsys, argv[0])


def test_focus_smallest_valid_limits_still_run(capsys):
    # one estimator step is too few for cdaf's scan: the cycle runs and ends Failed (exit 1), not bad input
    assert main(["focus", SIM, "--clock", "sim", "--method", "cdaf", "--max-steps", "1", "--threads", "1"]) == 1
    assert "step limit" in capsys.readouterr().err


def test_eval_threads_below_1(tiny_stack, capsys):
    assert main(["eval", "--stacks", str(tiny_stack), "--method", "cdaf", "--threads", "0"]) == 2
    _one_line_naming(capsys, "--threads")


@pytest.mark.parametrize("argv", [
    ["--min-confidence", "nan"],
    ["--min-confidence", "-0.1"],
    ["--min-confidence", "1.5"],
    ["--disparity-limit", "0"],
    ["--disparity-limit", "-1"],
    ["--disparity-limit", "nan"],
])
def test_calibrate_fit_thresholds_out_of_range(argv, tiny_stack, tmp_path, capsys):
    assert main(["calibrate", "fit", "--stacks", str(tiny_stack), "--out", str(tmp_path / "c.json"), *argv]) == 2
    _one_line_naming(capsys, argv[0])
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize("argv", [
    ["capture-stack", SIM, "--out", "{out}/s.npz"],
    ["calibrate", "capture", SIM, "--out", "{out}/sweeps", "--scenes", "1"],
])
def test_more_slices_than_a_stack_file_may_hold_is_refused_before_capturing(argv, tmp_path, capsys):
    # hil_af.stackcheck.MAX_SLICES = 1024: every reader refuses a stack of 1025 slices, so capturing one
    # (minutes of sweeping, GBs of frames) can only end in a file the project cannot read back
    argv = [a.format(out=tmp_path) for a in argv]
    assert main([*argv, "--slices", "1025", "--clock", "sim", "--no-progress"]) == 2
    assert "1024" in _one_line_naming(capsys, "--slices")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stacks", ["missing", "empty"])
def test_eval_without_stacks_is_one_error_line_and_no_skipped_lines(stacks, tmp_path, capsys):
    # without --method eval lists the methods it skips; before, those lines came first and the
    # error about --stacks fourth, though docs/cli.md says an error is one line on stderr
    (tmp_path / "empty").mkdir()
    assert main(["eval", "--stacks", str(tmp_path / stacks)]) == 2
    assert "skipped" not in _one_line_naming(capsys, "--stacks")
