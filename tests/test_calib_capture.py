"""``calibrate capture``: sweeps over scenes, manifest, resume, kill at any moment."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from hil_af.calibration.capture import MANIFEST, capture_sweeps, read_manifest, sweep_name
from hil_af.clock import SimClock
from hil_af.drivers.registry import open_rig
from hil_af.errors import BadInput, FormatError
from hil_af.stacks import load_stack

URL = "sim://?seed=5&profile=sim-default"
SLICES = 7


def _rig(url=URL):
    return open_rig(url, clock=SimClock())


def test_capture_writes_one_stack_per_scene_and_a_manifest(tmp_path):
    with _rig() as rig:
        man = capture_sweeps(rig, tmp_path, 2, n_slices=SLICES, progress=False, log=lambda s: None)
    assert sorted(man["done"]) == [sweep_name(0), sweep_name(1)]
    scenes = set()
    for i in range(2):
        st = load_stack(tmp_path / sweep_name(i))
        assert st.n == SLICES and st.rois.shape == (12, 4)
        assert st.meta["gt_source"] == "rig truth" and len(st.meta["gt_lens_positions"]) == 12
        scenes.add(st.meta["scene"])
        assert st.meta["source"] == "hil-af calibrate capture"
    assert scenes == {"cards-0", "cards-1"}  # the sim changed the scene between sweeps
    a, b = (load_stack(tmp_path / sweep_name(i)).left[3] for i in range(2))
    assert not np.array_equal(a, b)
    m = json.loads((tmp_path / MANIFEST).read_text())
    assert m["format"] == "hil-af-calibration-sweeps" and m["slices"] == SLICES


def test_existing_sweeps_need_resume_and_resume_recovers_unlisted_and_stale_files(tmp_path):
    with _rig() as rig:
        capture_sweeps(rig, tmp_path, 1, n_slices=SLICES, progress=False, log=lambda s: None)
        with pytest.raises(BadInput, match="--resume"):
            capture_sweeps(rig, tmp_path, 2, n_slices=SLICES, progress=False)
        # a kill after the rename, before the manifest update; and a half-written temp file
        m = read_manifest(tmp_path)
        m["done"] = {}
        (tmp_path / MANIFEST).write_text(json.dumps(m))
        (tmp_path / ".sweep_0001.npz.tmp-abc123").write_bytes(b"PK\x03\x04half")
        logs = []
        man = capture_sweeps(rig, tmp_path, 2, n_slices=SLICES, resume=True, progress=False, log=logs.append)
        with pytest.raises(BadInput, match="slices"):
            capture_sweeps(rig, tmp_path, 2, n_slices=SLICES + 2, resume=True, progress=False, log=lambda s: None)
    assert man["done"][sweep_name(0)].get("recovered") is True
    assert sweep_name(1) in man["done"]
    assert not list(tmp_path.glob(".*tmp*"))
    assert any("temp file" in s for s in logs)


def test_resume_redoes_a_sweep_changed_since_written(tmp_path):
    """--resume trusts no listed file: size and SHA-256 are recorded at write and checked before skipping."""
    with _rig() as rig:
        man = capture_sweeps(rig, tmp_path, 2, n_slices=SLICES, progress=False, log=lambda s: None)
        entry = man["done"][sweep_name(0)]
        assert entry["bytes"] == (tmp_path / sweep_name(0)).stat().st_size and len(entry["sha256"]) == 64
        good = (tmp_path / sweep_name(0)).read_bytes()
        (tmp_path / sweep_name(0)).write_bytes(good[: len(good) // 2])  # truncated after it was listed
        b = bytearray((tmp_path / sweep_name(1)).read_bytes())
        b[-100] ^= 1  # same size, one bit different
        (tmp_path / sweep_name(1)).write_bytes(bytes(b))
        logs: list[str] = []
        man2 = capture_sweeps(rig, tmp_path, 2, n_slices=SLICES, resume=True, progress=False, log=logs.append)
    assert any(sweep_name(0) in s and "truncated or replaced" in s for s in logs), logs
    assert any(sweep_name(1) in s and "SHA-256 differs" in s for s in logs), logs
    for i in range(2):
        load_stack(tmp_path / sweep_name(i))  # both captured again, whole
        assert man2["done"][sweep_name(i)]["captured_utc"]
    assert (tmp_path / sweep_name(0)).stat().st_size > len(good) // 2


def test_corrupt_manifest_is_reported(tmp_path):
    (tmp_path / MANIFEST).write_text("{ truncated")
    with _rig() as rig, pytest.raises(FormatError, match="manifest.json"):
        capture_sweeps(rig, tmp_path, 1, n_slices=SLICES, resume=True, progress=False)


def test_real_rig_prompts_between_targets(tmp_path, capsys):
    with _rig() as rig:
        rig.change_scene = None  # a real rig cannot change its target by itself
        asked = []
        capture_sweeps(rig, tmp_path, 2, n_slices=SLICES, progress=False, input_fn=lambda: asked.append(1) or "",
                       log=lambda s: None)
        assert len(asked) == 2
        assert "press Enter" in capsys.readouterr().err

        def eof():
            raise EOFError

        with pytest.raises(BadInput, match="--no-prompt"):
            capture_sweeps(rig, tmp_path / "b", 1, n_slices=SLICES, progress=False, input_fn=eof)
        capture_sweeps(rig, tmp_path / "c", 1, n_slices=SLICES, progress=False, prompt=False, log=lambda s: None)
    assert load_stack(tmp_path / "c" / sweep_name(0)).meta["scene"] == "target-0"


def _cmd(out, resume):
    cmd = [sys.executable, "-m", "hil_af.cli", "calibrate", "capture", URL, "--out", str(out), "--scenes", "4",
           "--slices", str(SLICES), "--clock", "sim", "--no-progress"]
    return cmd + (["--resume"] if resume else [])


