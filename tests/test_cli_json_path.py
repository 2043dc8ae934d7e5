"""``--json PATH`` writes the JSON object to PATH and keeps the human-readable output on stdout
(docs/cli.md "Conventions"); ``--json`` alone prints the JSON object and nothing else on stdout.

Before this was enforced only ``eval`` kept its table; every other command printed nothing when
given ``--json PATH``.
"""

from __future__ import annotations

import json

import pytest

from hil_af.cli import main

SIM = "sim://?seed=1"


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    path = tmp_path_factory.mktemp("frame") / "f.npz"
    assert main(["capture-frame", SIM, "--out", str(path), "--clock", "sim"]) == 0
    return path


# (argv without --json, the start of the human-readable stdout, a key of the JSON object)
CASES = {
    "drivers": (lambda d, f: ["drivers"], "i2c://", "schemes"),
    "focus": (lambda d, f: ["focus", SIM, "--method", "cdaf", "--clock", "sim"], "Focused: position", "state"),
    "capture-frame": (lambda d, f: ["capture-frame", SIM, "--out", str(d / "g.npz"), "--clock", "sim"],
                      "wrote ", "lens_position"),
    "capture-stack": (lambda d, f: ["capture-stack", SIM, "--out", str(d / "s.npz"), "--slices", "3",
                                    "--clock", "sim", "--no-progress"], "wrote ", "gt_index"),
    "disparity": (lambda d, f: ["disparity", str(f), "--grid", "1x2"], ": 1x2 cells, method xcorr", "cells"),
    "calibrate flatfield": (lambda d, f: ["calibrate", "flatfield", "--frame", str(f), "--out", str(d / "ff.npz")],
                            "wrote ", "lr_ratio_min"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_json_path_keeps_the_human_output(name, frame, tmp_path, capsys):
    argv, head, key = CASES[name]
    capsys.readouterr()
    assert main([*argv(tmp_path, frame), "--json", str(tmp_path / "o.json")]) == 0
    out = capsys.readouterr().out
    assert out and head in out.splitlines()[0], out
    assert key in json.loads((tmp_path / "o.json").read_text())


@pytest.mark.parametrize("name", sorted(CASES))
def test_bare_json_prints_only_the_object(name, frame, tmp_path, capsys):
    argv, head, key = CASES[name]
    capsys.readouterr()
    assert main([*argv(tmp_path, frame), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and key in json.loads(out)


def test_failed_focus_with_json_path_says_why_on_stderr(tmp_path, capsys):
    # one estimator step cannot finish cdaf's scan: Failed, exit 1
    argv = ["focus", SIM, "--method", "cdaf", "--clock", "sim", "--max-steps", "1"]
    assert main([*argv, "--json", str(tmp_path / "o.json")]) == 1
    cap = capsys.readouterr()
    assert cap.out.startswith("Failed: position") and "focus failed: step limit" in cap.err
    assert json.loads((tmp_path / "o.json").read_text())["state"] == "Failed"
    assert main([*argv, "--json"]) == 1
    cap = capsys.readouterr()
    assert json.loads(cap.out)["state"] == "Failed" and cap.err == ""
