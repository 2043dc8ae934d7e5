"""replay:// rigs: URL grammar, nearest-slice capture, lens range, truth, lens map, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from hil_af.clock import SimClock
from hil_af.drivers.base import FrameSource, LensActuator
from hil_af.drivers.registry import open_lens, open_rig, open_source, schemes
from hil_af.errors import BadInput, FormatError


def numpy_stack(path: Path, n=6, H=12, W=16, dioptres=True, black=10) -> Path:
    """A stack written with plain numpy: slice k is filled with the value 100 * (k + 1) + black."""
    left = np.stack([np.full((H, W), 100 * (k + 1) + black, np.uint16) for k in range(n)])
    right = left + 1
    meta = {"format": "focal-stack", "version": 1, "black_level": black, "white_level": 4095, "lens_units": "vcm_code"}
    if dioptres:
        meta["lens_dioptres"] = [float(10 - 2 * k) for k in range(n)]  # decreasing with the code
    np.savez(path, left=left, right=right, lens_positions=np.array([100.0, 200, 300, 450, 600, 800])[:n],
             rois=np.array([[0, 0, 8, 8], [8, 4, 8, 8], [4, 4, 8, 8]], np.int32), gt_index=np.array([2, -1, 5], np.int16),
             sensor_hw=np.array([H + 4, W], np.int32), origin=np.array([2, 0], np.int32), meta=np.array(json.dumps(meta)))
    return path


@pytest.fixture
def stack_path(tmp_path):
    return numpy_stack(tmp_path / "stack.npz")


def test_registered_and_protocols(stack_path):
    assert "replay" in schemes() and schemes()["replay"].startswith("[rig]")
    with open_rig(f"replay://{stack_path}", clock=SimClock()) as rig:
        assert isinstance(rig.source, FrameSource) and isinstance(rig.lens, LensActuator)
        assert rig.lens.range == (100.0, 800.0) and rig.lens.settle_time_s == 0.0
        np.testing.assert_array_equal(rig.af_positions, [100, 200, 300, 450, 600, 800])
        np.testing.assert_array_equal(rig.slice_positions(), [100, 200, 300, 450, 600, 800])


def test_capture_returns_the_nearest_slice(stack_path):
    clock = SimClock(5.0)
    with open_rig(f"replay://{stack_path}", clock=clock) as rig:
        f = rig.source.capture()  # the lens starts at the first slice
        assert f.lens_position == 100.0 and float(f.left[0, 0]) == 100.0 and float(f.right[0, 0]) == 101.0
        for target, k in [(374.9, 2), (375.1, 3), (800, 5), (149, 0), (151, 1), (700.1, 5)]:
            rig.lens.move_to(target)
            clock.sleep(0.25)
            f = rig.source.capture()
            assert f.lens_position == [100, 200, 300, 450, 600, 800][k]
            assert float(f.left.mean()) == 100 * (k + 1)  # black level 10 subtracted
            assert f.metadata["slice"] == k
            assert f.timestamp_s == clock.monotonic()
        assert f.white_level == 4095 - 10 and f.sensor_hw == (16, 16) and f.origin == (2, 0)


def test_lens_range_checked(stack_path):
    with open_rig(f"replay://{stack_path}", clock=SimClock()) as rig:
        for bad in (99.9, 800.1, float("nan"), "far"):
            with pytest.raises(BadInput, match="replay lens: position"):
                rig.lens.move_to(bad)  # type: ignore[arg-type]
        assert rig.lens.position == 100.0


def test_truth_matches_roi_rows_exactly(stack_path):
    with open_rig(f"replay://{stack_path}", clock=SimClock()) as rig:
        t = rig.truth(np.array([[0, 0, 8, 8], [8, 4, 8, 8], [4, 4, 8, 8], [0, 0, 8, 9]]))
        assert t[0] == 300.0 and t[2] == 800.0
        assert np.isnan(t[1])  # gt unknown in the stack
        assert np.isnan(t[3])  # not one of the stack's RoIs
        assert rig.truth([4, 4, 8, 8]).tolist() == [800.0]


def test_lens_map_from_meta_dioptres(stack_path, tmp_path):
    with open_rig(f"replay://{stack_path}", clock=SimClock()) as rig:
        assert rig.lens_map is not None
        assert rig.lens_map.to_dioptres(450.0) == pytest.approx(4.0)
        assert rig.lens_map.to_code(6.0) == pytest.approx(300.0)
    p = numpy_stack(tmp_path / "nod.npz", dioptres=False)
    with open_rig(f"replay://{p}", clock=SimClock()) as rig:
        assert rig.lens_map is None


def test_url_grammar_relative_absolute_query(stack_path, monkeypatch):
    monkeypatch.chdir(stack_path.parent.parent)
    rel = f"{stack_path.parent.name}/{stack_path.name}"
    for url in (f"replay://{rel}", f"replay://./{rel}",
                f"replay://{stack_path}"):
        with open_rig(url, clock=SimClock()) as rig:
            assert rig.source.stack.n == 6
    monkeypatch.chdir(stack_path.parent)
    with open_rig("replay://stack.npz?settle_ms=12.5&start=450", clock=SimClock()) as rig:
        assert rig.lens.settle_time_s == pytest.approx(0.0125)
        assert rig.lens.position == 450.0
        assert rig.source.capture().lens_position == 450.0
    assert open_lens("replay://stack.npz").range == (100.0, 800.0)
    assert open_source("replay://stack.npz").sensor_hw == (16, 16)


def test_errors_name_the_path_or_parameter(tmp_path, stack_path):
    missing = tmp_path / "sub" / "missing.npz"
    with pytest.raises(BadInput) as e:
        open_rig(f"replay://{missing}")
    assert str(missing) in str(e.value)
    with pytest.raises(BadInput, match="no stack file given"):
        open_rig("replay://")
    with pytest.raises(BadInput, match="unknown query parameter"):
        open_rig(f"replay://{stack_path}?speed=2")
    with pytest.raises(BadInput, match="settle_ms"):
        open_rig(f"replay://{stack_path}?settle_ms=-1")
    with pytest.raises(BadInput, match="start position 50.0 is outside"):
        open_rig(f"replay://{stack_path}?start=50")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(FormatError, match=str(bad)):
        open_rig(f"replay://{bad}")


def test_closed_devices_refuse(stack_path):
    from hil_af.errors import DeviceError

    rig = open_rig(f"replay://{stack_path}", clock=SimClock())
    rig.close()
    with pytest.raises(DeviceError):
        rig.source.capture()
    with pytest.raises(DeviceError):
        rig.lens.move_to(200)


def test_percent_encoded_path(tmp_path):
    d = tmp_path / "with space"
    d.mkdir()
    p = numpy_stack(d / "s.npz")
    with open_rig("replay://" + os.fspath(p).replace(" ", "%20"), clock=SimClock()) as rig:
        assert rig.source.stack.path == p
