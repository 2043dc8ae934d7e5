"""The command line as a user meets it (issue 16): usage, errors, help, plurals, progress bars,
frame files, calibrations of either kind in eval, install hints, the calibration report."""

from __future__ import annotations

import argparse
import io
import json
import sys

import numpy as np
import pytest

from hil_af.cli import build_parser, main
from hil_af.errors import BadInput
from hil_af.paths import REPO_ROOT
from synthetic import make_stack

EXAMPLES = REPO_ROOT / "calibration" / "examples" / "sim-wide"


# --------------------------------------------------------------------------- usage and errors


def test_bare_hil_af_prints_the_usage_and_the_commands(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: hil-af") and "capture-frame" in err and "calibrate" in err


@pytest.mark.parametrize("argv, prog", [
    (["calibrate", "fit", "--stacks", "x"], "hil-af calibrate fit"),
    (["eval"], "hil-af eval"),
    (["calibrate"], "hil-af calibrate"),
])
def test_usage_errors_name_the_subcommand(argv, prog, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{prog}: error: ") and err.count("\n") == 1


def _walk(parser, path=("hil-af",)):
    yield path, parser
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from _walk(sub, (*path, name))


def test_every_option_has_help():
    missing = {}
    for path, parser in _walk(build_parser()):
        for a in parser._actions:
            if a.help is None and not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                missing.setdefault(" ".join(path), set()).update(a.option_strings or [a.dest])
    assert missing == {}


def test_calibrate_subcommands_have_descriptions():
    calibrate = dict(_walk(build_parser()))[("hil-af", "calibrate")]
    subs = next(a for a in calibrate._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subs.choices) == {"capture", "fit", "report", "flatfield", "lensmap"}
    for name, p in subs.choices.items():
        assert p.description and len(p.description) > 60, name


def test_plurals():
    from hil_af.evaluation import format_table
    from hil_af.text import plural

    assert [plural(n, "stack") for n in (0, 1, 2)] == ["0 stacks", "1 stack", "2 stacks"]
    block = dict(exact=1, le1=1, le2=1, le4=1, mae=0, rmse=0, captures_mean=1, moves_mean=1, compute_ms_per_step=0, failed=0)
    head = format_table({"stacks": 1, "rois": 1, "samples": 1, "methods": {"cdaf": block}}).splitlines()[0]
    assert head == "1 stack, 1 RoI, 1 sample per method"


@pytest.mark.parametrize("text, pair", [("448x672", (448, 672)), ("3X4", (3, 4)), (" 2x 3", (2, 3))])
def test_int_pair_reads_axb(text, pair):
    from hil_af.text import int_pair

    assert int_pair(text) == pair


@pytest.mark.parametrize("text", ["3x", "3x4x5", "axb", "34", "3.5x4", ""])
def test_int_pair_rejects_what_is_not_two_integers(text):
    from hil_af.text import int_pair

    with pytest.raises(ValueError):
        int_pair(text)


def test_focus_line_says_1_capture_not_1_captures(capsys):
    # pe: one model step on one frame
    assert main(["focus", "sim://?seed=1", "--method", "pe", "--clock", "sim"]) in (0, 1)
    out = capsys.readouterr().out
    assert "1 captures" not in out and "1 moves" not in out
    assert "1 capture," in out  # pe: one model step, one frame


@pytest.mark.parametrize("roi, what", [("0,0,0,0", "width and height (W, H) must be positive"),
                                       ("10,10,-4,8", "must be positive"),
                                       ("-1,0,8,8", "X and Y must be >= 0")])
def test_roi_with_no_area_says_what_is_wrong(roi, what, capsys):
    assert main(["focus", "sim://?seed=1", f"--roi={roi}", "--clock", "sim"]) == 2
    assert what in capsys.readouterr().err


@pytest.mark.parametrize("rig", ["sim:/?seed=1", "sim:?seed=1"])
def test_a_url_without_double_slash_hints_at_the_syntax(rig, capsys):
    assert main(["focus", rig]) == 2
    err = capsys.readouterr().err
    assert "scheme://" in err and "sim://?seed=1" in err and err.count("\n") == 1


def test_a_misspelt_profile_name_gets_no_url_hint(capsys):
    assert main(["focus", "sim-wdie"]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "scheme://" not in err


def test_interrupted_capture_suggests_resume(tmp_path, monkeypatch, capsys):
    import hil_af.calibration.capture as C

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(C, "capture_sweeps", interrupted)
    assert main(["calibrate", "capture", "sim://?seed=1", "--out", str(tmp_path / "s"), "--clock", "sim"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "--resume" in err


def test_interrupted_focus_has_no_resume_hint(monkeypatch, capsys):
    import hil_af.commands.focus as F

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(F, "run", interrupted)
    assert main(["focus", "sim://?seed=1"]) == 130
    assert capsys.readouterr().err.strip() == "hil-af focus: interrupted"


# --------------------------------------------------------------------------- install hints


def test_report_without_matplotlib_names_both_install_forms(monkeypatch):
    from hil_af.calibration.report import _mpl

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(BadInput) as e:
        _mpl()
    msg = str(e.value)
    assert "pip install -e '.[report]'" in msg and "pip install 'hil-af[report]'" in msg


def test_l2af_without_pillow_names_both_install_forms(monkeypatch, tmp_path):
    from hil_af.l2af import _read_png

    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(BadInput, match=r"pip install -e '\.\[l2af\]'.*hil-af\[l2af\]"):
        _read_png(tmp_path / "x.png")


# --------------------------------------------------------------------------- progress bars


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal_unless_forced(monkeypatch):
    from hil_af.progress import bar, show

    pipe, tty = io.StringIO(), _Tty()
    monkeypatch.setattr(sys, "stderr", pipe)
    assert show(None) is False and show(True) is True
    list(bar(range(3), None, desc="quiet"))
    assert pipe.getvalue() == ""
    list(bar(range(3), True, desc="forced"))
    assert "forced" in pipe.getvalue()
    monkeypatch.setattr(sys, "stderr", tty)
    assert show(None) is True and show(False) is False
    list(bar(range(3), None, desc="terminal"))
    assert "terminal" in tty.getvalue()


@pytest.fixture(scope="module")
def synth_stacks(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    make_stack(d / "a.npz", seed=1)
    make_stack(d / "b.npz", gts=(2, 5, 8, 10), seed=2)
    return d


@pytest.mark.parametrize("flag, shown", [(None, False), ("--progress", True), ("--no-progress", False)])
def test_calibrate_fit_bar_in_a_pipe_only_with_progress(flag, shown, synth_stacks, tmp_path, capsys):
    argv = ["calibrate", "fit", "--stacks", str(synth_stacks), "--out", str(tmp_path / "c.json"), "--global",
            "--max-shift", "4"]
    main(argv + ([flag] if flag else []))
    err = capsys.readouterr().err
    assert ("measure" in err) == shown, err


def test_progress_and_no_progress_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--stacks", "x", "--progress", "--no-progress"])
    assert "not allowed with" in capsys.readouterr().err


# --------------------------------------------------------------------------- frame files


@pytest.fixture(scope="module")
def wide_stack(tmp_path_factory):
    """A 25-slice sim-wide stack (the example calibrations' lens)."""
    from hil_af.capture import sweep
    from hil_af.clock import SimClock
    from hil_af.drivers.registry import open_rig
    from hil_af.stacks import save_stack

    path = tmp_path_factory.mktemp("wide") / "wide.npz"
    with open_rig("sim://?seed=9200&profile=sim-wide", clock=SimClock()) as rig:
        save_stack(path, sweep(rig, n_slices=25, progress=False), compressed=False)
    return path


def test_capture_frame_from_a_replayed_stack_is_that_slice(wide_stack, tmp_path, capsys):
    from hil_af.stacks import load_frame, load_stack

    st = load_stack(wide_stack)
    k = 7
    out = tmp_path / "f.npz"
    assert main(["capture-frame", f"replay://{wide_stack}", "--out", str(out),
                 "--position", str(st.lens_positions[k]), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    f, ref = load_frame(out), st.frame(k)
    np.testing.assert_array_equal(f.left, ref.left)
    np.testing.assert_array_equal(f.right, ref.right)
    assert f.lens_position == pytest.approx(st.lens_positions[k])
    assert summary["view_hw"] == list(st.view_hw) and summary["path"] == str(out)


def test_capture_frame_from_the_simulator_moves_the_lens_first(tmp_path, capsys):
    from hil_af.stacks import load_frame

    out = tmp_path / "sim.npz"
    assert main(["capture-frame", "sim://?seed=1", "--out", str(out), "--position", "300", "--clock", "sim"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: one 384x256 dual-pixel frame")
    f = load_frame(out)
    assert f.shape == (256, 384) and abs(f.lens_position - 300) < 5


def test_capture_frame_bad_position_exit_2(tmp_path, capsys):
    assert main(["capture-frame", "sim://?seed=1", "--out", str(tmp_path / "x.npz"), "--position", "5000",
                 "--clock", "sim"]) == 2
    assert not (tmp_path / "x.npz").exists()


def test_disparity_on_a_stack_says_so_and_slice_picks_one(wide_stack, tmp_path, capsys):
    from hil_af.stacks import load_stack

    n = load_stack(wide_stack).n
    assert main(["disparity", str(wide_stack)]) == 2
    err = capsys.readouterr().err
    assert f"is a focal stack of {n} slices" in err and "--slice K" in err
    # --slice K gives what the frame file of that slice gives
    frame = tmp_path / "k.npz"
    assert main(["capture-frame", f"replay://{wide_stack}", "--out", str(frame), "--position",
                 str(load_stack(wide_stack).lens_positions[12])]) == 0
    capsys.readouterr()
    assert main(["disparity", str(wide_stack), "--slice", "12", "--grid", "2x3", "--json"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(["disparity", str(frame), "--grid", "2x3", "--json"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert a["cells"] == b["cells"] and a["slice"] == 12 and b["slice"] is None
    assert main(["disparity", str(wide_stack), "--slice", str(n)]) == 2
    assert f"has {n} slices (0..{n - 1})" in capsys.readouterr().err
    assert main(["disparity", str(frame), "--slice", "0"]) == 2
    assert "is a frame file, not a focal stack" in capsys.readouterr().err


# --------------------------------------------------------------------------- eval and calibration kinds


def _eval(argv, capsys):
    status = main(["eval", "--start-stride", "12", "--json"] + argv)
    cap = capsys.readouterr()
    return status, (json.loads(cap.out) if status == 0 else None), cap.err


def test_eval_takes_a_global_calibration_as_calibration(wide_stack, capsys):
    cal = json.loads((EXAMPLES / "cal-global.json").read_text())
    assert cal["kind"] == "global"
    status, r, err = _eval(["--stacks", str(wide_stack), "--method", "pdaf-global",
                            "--calibration", str(EXAMPLES / "cal-global.json")], capsys)
    assert status == 0, err
    # the same numbers as through the alias
    status, r2, err = _eval(["--stacks", str(wide_stack), "--method", "pdaf-global",
                             "--global-calibration", str(EXAMPLES / "cal-global.json")], capsys)
    assert status == 0 and r["methods"]["pdaf-global"]["mae"] == r2["methods"]["pdaf-global"]["mae"]


def test_eval_pdaf_with_a_global_file_says_it_is_global(wide_stack, capsys):
    status, _, err = _eval(["--stacks", str(wide_stack), "--method", "pdaf",
                            "--calibration", str(EXAMPLES / "cal-global.json")], capsys)
    assert status == 2 and "fitted with --global" in err and "[calibration]" not in err


def test_eval_pdaf_without_calibration_names_the_option_not_a_rig_profile(wide_stack, capsys):
    status, _, err = _eval(["--stacks", str(wide_stack), "--method", "pdaf"], capsys)
    assert status == 2 and "--calibration CAL.json" in err
    assert "[calibration]" not in err and "rig profile" not in err


def test_eval_lists_the_methods_it_skipped_and_why(wide_stack, tmp_path, capsys):
    status, r, err = _eval(["--stacks", str(wide_stack), "--model", str(tmp_path)], capsys)
    assert status == 0 and list(r["methods"]) == ["cdaf"]
    lines = [line for line in err.splitlines() if line.startswith("hil-af eval: skipped")]
    assert len(lines) == 4, err
    assert any(line.startswith("hil-af eval: skipped zncc2: needs a ZNCC calibration: --zncc-calibration") for line in lines)
    assert any(line.startswith("hil-af eval: skipped pdaf: needs a per-position calibration") for line in lines)
    assert any(line.startswith("hil-af eval: skipped pdaf-global, pdaf-loop: each needs a global calibration")
               for line in lines)
    assert any(line.startswith("hil-af eval: skipped pe, pe2, hybrid: each needs a model") and str(tmp_path) in line
               for line in lines)


def test_eval_with_a_global_calibration_runs_its_methods_and_skips_pdaf(wide_stack, tmp_path, capsys):
    status, r, err = _eval(["--stacks", str(wide_stack), "--model", str(tmp_path),
                            "--calibration", str(EXAMPLES / "cal-global.json")], capsys)
    assert status == 0 and list(r["methods"]) == ["cdaf", "pdaf-global", "pdaf-loop"]
    assert "skipped pdaf: needs a per-position calibration, and" in err and "fitted with --global" in err


def test_two_different_global_calibrations_are_refused(wide_stack, tmp_path, capsys):
    other = tmp_path / "g.json"
    other.write_text((EXAMPLES / "cal-global.json").read_text())
    status, _, err = _eval(["--stacks", str(wide_stack), "--calibration", str(EXAMPLES / "cal-global.json"),
                            "--global-calibration", str(other)], capsys)
    assert status == 2 and "give one of them" in err


# --------------------------------------------------------------------------- calibration report


def _count_clipped(cal):
    s = cal["samples"]
    cid = np.asarray(s["cell"])
    g = np.array([c["gain_px_per_unit"] for c in cal["cells"]])[cid]
    o = np.array([c["offset_px"] for c in cal["cells"]])[cid]
    res = np.asarray(s["disparity_px"]) - (g * np.asarray(s["defocus"]) + o)
    return int((np.abs(res) > 3).sum()), res.size


@pytest.mark.slow
def test_report_says_how_many_residuals_were_clipped(tmp_path):
    pytest.importorskip("matplotlib")
    from hil_af.calibration.report import write_report
    from hil_af.calibration.store import load_calibration

    cal = load_calibration(EXAMPLES / "cal.json")
    n_far, n = _count_clipped(cal)
    assert 0 < n_far < n
    files = write_report(cal, tmp_path / "r")
    html = files[-1].read_text()
    assert f"{n_far} of {n} residuals lie beyond +-3 px" in html and "colour bar" in html
    # the same samples without the far points: nothing clipped, and the report says so
    s = cal["samples"]
    keep = [i for i, (c, x, d) in enumerate(zip(s["cell"], s["defocus"], s["disparity_px"]))
            if abs(d - (cal["cells"][c]["gain_px_per_unit"] * x + cal["cells"][c]["offset_px"])) <= 3]
    cal["samples"] = {k: [v[i] for i in keep] for k, v in s.items()}
    html = write_report(cal, tmp_path / "r2")[-1].read_text()
    assert f"All {len(keep)} residuals lie within +-3 px" in html
