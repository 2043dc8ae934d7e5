"""kill -9 during ``hil-af calibrate capture`` at random moments: no partial file, ``--resume`` completes the set.

A reference run gives the expected set of stack files and the run time;
then the capture is started (with ``--resume``) and SIGKILLed at seeded
random moments several times.  After every kill each visible ``.npz`` in the
folder must be a complete, valid focal stack (partial writes may only exist
as hidden ``.NAME.tmp-*`` files of hil_af.atomic); a last ``--resume`` run
must finish with exactly the reference set.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil_af.stacks import load_stack

REPO = Path(__file__).resolve().parents[1]
SCENES = 5


def _cmd(out: Path, resume: bool) -> list[str]:
    cmd = [sys.executable, "-m", "hil_af.cli", "calibrate", "capture", "sim://?seed=1", "--out", str(out),
           "--scenes", str(SCENES)]
    for opt, args in (("--clock", ["--clock", "sim"]), ("--slices", ["--slices", "17"]), ("--no-progress", ["--no-progress"])):
        if _supports(opt):
            cmd += args
    return cmd + (["--resume"] if resume else [])


_HELP: list[str] = []


def _supports(opt: str) -> bool:
    if not _HELP:
        p = subprocess.run([sys.executable, "-m", "hil_af.cli", "calibrate", "capture", "--help"],
                           capture_output=True, text=True, cwd=REPO, timeout=60)
        _HELP.append(p.stdout)
    return opt in _HELP[0]


def _visible_stacks(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*.npz") if not p.name.startswith("."))


def _check_complete(d: Path) -> None:
    for p in _visible_stacks(d):
        s = load_stack(p)  # raises FormatError on a partial or corrupt file
        assert s.n >= 2
    for p in d.rglob("*.json"):
        if not p.name.startswith("."):
            json.loads(p.read_text())  # manifests are whole too


@pytest.mark.slow
def test_kill9_at_random_moments_then_resume_completes_the_set(tmp_path):
    ref = tmp_path / "ref"
    t = time.monotonic()
    p = subprocess.run(_cmd(ref, resume=False), capture_output=True, text=True, cwd=REPO, timeout=300)
    run_s = time.monotonic() - t
    assert p.returncode == 0, p.stderr
    expected = [q.relative_to(ref) for q in _visible_stacks(ref)]
    assert len(expected) >= SCENES

    out = tmp_path / "killed"
    sweep_s = run_s / SCENES
    rng = random.Random(20261122)
    kills = 0
    for attempt in range(4):
        before = len(_visible_stacks(out)) if out.exists() else 0
        proc = subprocess.Popen(_cmd(out, resume=True), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
        # wait for the capture to make progress (a temp file or a new sweep), then kill a random moment later
        end = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < end:
            if out.exists() and (list(out.glob(".*.tmp-*")) or len(_visible_stacks(out)) > before):
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, sweep_s))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(60)
        proc.stderr.close()
        _check_complete(out)
    assert kills >= 2, "the capture finished before it could be killed: make the run longer"
    p = subprocess.run(_cmd(out, resume=True), capture_output=True, text=True, cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stderr
    _check_complete(out)
    assert [q.relative_to(out) for q in _visible_stacks(out)] == expected
    assert not list(out.rglob(".*.tmp-*")), "a completed resume should leave no temp files"
