"""Controller: state machine, limits, clamping, stalls, timeouts, continuous re-trigger, windows."""

import numpy as np
import pytest

from hil_af.clock import SimClock
from hil_af.controller.base import AFState, Limits
from hil_af.controller.core import Controller
from hil_af.drivers.registry import open_rig
from hil_af.errors import BadInput, DeviceTimeout
from hil_af.stacks import load_stack
from synthetic import make_stack


@pytest.fixture
def replay(tmp_path):
    path = make_stack(tmp_path / "s.npz", seed=4)
    rig = open_rig(f"replay://{path}", clock=SimClock())
    yield rig
    rig.close()


def test_states_idle_then_focused(replay):
    ctl = Controller(replay, method="cdaf")
    assert ctl.state is AFState.IDLE
    seen = []
    orig = replay.source.capture

    def spy_capture():
        seen.append(ctl.state)
        return orig()

    replay.source.capture = spy_capture
    res = ctl.focus(rois=[replay.source.stack.rois[1]])
    assert AFState.SCANNING in seen
    assert res.state is AFState.FOCUSED and ctl.state is AFState.FOCUSED
    assert res.slice_index == replay.source.stack.gt_index[1]
    assert res.to_json()["state"] == "Focused"


def test_flat_roi_fails_with_reason(tmp_path):
    path = make_stack(tmp_path / "f.npz", flat_roi=0, seed=5)
    with open_rig(f"replay://{path}", clock=SimClock()) as rig:
        ctl = Controller(rig, method="cdaf")
        res = ctl.focus(rois=[load_stack(path).rois[0]])
    assert res.state is AFState.FAILED and ctl.state is AFState.FAILED
    assert "no contrast peak" in res.reason


def test_step_and_move_limits(replay):
    res = Controller(replay, method="cdaf", limits=Limits(max_steps=3)).focus(rois=[replay.source.stack.rois[0]])
    assert res.state is AFState.FAILED and "step limit" in res.reason and res.captures == 3
    res = Controller(replay, method="cdaf", limits=Limits(max_moves=2)).focus(rois=[replay.source.stack.rois[0]])
    assert res.state is AFState.FAILED and "move limit" in res.reason and res.moves == 2


def test_time_budget_counts_settling(tmp_path):
    path = make_stack(tmp_path / "s.npz", seed=6)
    with open_rig(f"replay://{path}?settle_ms=50", clock=SimClock()) as rig:
        res = Controller(rig, method="cdaf", limits=Limits(time_budget_s=0.2)).focus(rois=[rig.source.stack.rois[0]])
        assert res.state is AFState.FAILED and "time budget" in res.reason
        assert 0.2 < res.elapsed_s < 0.3  # settled on the virtual clock, 50 ms a move


def test_out_of_range_target_is_clamped(replay):
    ctl = Controller(replay, method="cdaf")
    from hil_af.controller.session import FocusSession

    s = FocusSession(replay, ctl.limits, replay.slice_positions())
    assert s.move_to(1e9) == replay.lens.range[1]
    assert s.move_to(-1e9) == replay.lens.range[0]


def test_manual_move_range_checked(replay):
    ctl = Controller(replay, method="cdaf")
    with pytest.raises(BadInput, match="outside the lens range"):
        ctl.move(5000)
    with pytest.raises(BadInput, match="must be a number"):
        ctl.move("abc")
    assert ctl.move(500) == 500 and replay.lens.position == 500


class StallingLens:
    """A lens double that stops 60 codes short of every target (a stalled VCM)."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    @property
    def position(self):
        return self.inner.position

    def move_to(self, p):
        lo, hi = self.inner.range
        self.inner.move_to(min(max(p - 60, lo), hi))
        self.commanded = p


def test_stalled_lens_is_failed_with_reason(replay):
    class Src:
        def __init__(self, rig, lens):
            self.rig, self.lens = rig, lens

        def capture(self):
            return self.rig.source.capture()

    replay.lens = StallingLens(replay.lens)
    replay.source.lens = replay.lens.inner
    res = Controller(replay, method="cdaf").focus(rois=[replay.source.stack.rois[2]])
    assert res.state is AFState.FAILED
    assert "did not reach" in res.reason


def test_capture_timeouts_are_retried_then_fail(replay):
    calls = {"n": 0}
    orig = replay.source.capture

    def flaky():
        calls["n"] += 1
        if calls["n"] % 2 == 1:
            raise DeviceTimeout("frame timed out")
        return orig()

    replay.source.capture = flaky
    ok = Controller(replay, method="cdaf").focus(rois=[replay.source.stack.rois[1]])
    assert ok.state is AFState.FOCUSED

    def dead():
        raise DeviceTimeout("frame timed out")

    replay.source.capture = dead
    ctl = Controller(replay, method="cdaf")
    bad = ctl.focus(rois=[replay.source.stack.rois[1]])
    assert bad.state is AFState.FAILED and "timed out 3 times" in bad.reason


def test_weighted_windows_follow_the_heavier_roi(replay):
    st = replay.source.stack
    ctl = Controller(replay, method="cdaf")
    a = ctl.focus(rois=[st.rois[0], st.rois[2]], weights=[10, 1])
    b = ctl.focus(rois=[st.rois[0], st.rois[2]], weights=[1, 10])
    assert a.slice_index == st.gt_index[0]
    assert b.slice_index == st.gt_index[2]
    with pytest.raises(BadInput, match="weights"):
        ctl.focus(rois=[st.rois[0]], weights=[1, 2])


def test_default_window_is_centre(replay):
    ctl = Controller(replay, method="cdaf")
    ctl.set_windows([replay.source.stack.rois[3]])
    assert ctl.focus().slice_index == replay.source.stack.gt_index[3]


def test_unknown_method_and_mode(replay):
    with pytest.raises(BadInput, match="known methods"):
        Controller(replay, method="magic")
    with pytest.raises(BadInput, match="known modes"):
        Controller(replay).set_mode("auto")


def test_continuous_retriggers_after_scene_change(tmp_path):
    a = make_stack(tmp_path / "a.npz", gts=(3, 6, 9, 11), seed=7)
    b = make_stack(tmp_path / "b.npz", gts=(10, 2, 4, 5), seed=8)
    with open_rig(f"replay://{a}", clock=SimClock()) as rig:
        ctl = Controller(rig, method="cdaf", retrigger_frames=3)
        ctl.set_windows([rig.source.stack.rois[0]])
        ctl.set_mode("continuous")
        first = ctl.continuous_step()
        assert first is not None and first.slice_index == 3
        assert [ctl.continuous_step() for _ in range(4)] == [None] * 4  # steady scene: no re-trigger
        rig.source.stack = load_stack(b)  # the scene changes
        assert ctl.continuous_step() is None and ctl.continuous_step() is None  # not yet: 3 frames needed
        again = ctl.continuous_step()
        assert again is not None and again.slice_index == 10
        ctl.set_mode("manual")
        assert ctl.continuous_step() is None and ctl.state is AFState.IDLE


def test_continuous_retriggers_on_disparity_when_contrast_alone_would_not():
    from hil_af.paths import REPO_ROOT

    cal = str(REPO_ROOT / "calibration/examples/sim-default/cal.json")
    with open_rig("sim://?seed=21", clock=SimClock()) as rig:
        # contrast threshold out of reach: only the PDAF defocus can re-trigger
        ctl = Controller(rig, method="pdaf", calibration=cal, retrigger_change=1e9, retrigger_frames=2)
        ctl.set_mode("continuous")
        first = ctl.continuous_step()
        assert first is not None and first.state is AFState.FOCUSED
        assert [ctl.continuous_step() for _ in range(3)] == [None] * 3  # in focus: defocus ~ 0
        rig.change_scene(5)  # new depths in front of the camera
        truth = float(rig.truth(ctl._windows(None, None)[0])[0])
        results = [ctl.continuous_step() for _ in range(3)]
        again = [r for r in results if r is not None]
        assert results[0] is None and len(again) == 1  # two frames of large defocus, then a cycle
        assert abs(again[0].position - truth) < 2 * float(np.diff(rig.slice_positions())[0])
