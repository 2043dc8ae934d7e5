"""The simulated rig as devices: URL grammar, protocols, VCM timing/hysteresis/range, determinism, faults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hil_af.clock import SimClock
from hil_af.drivers.base import FrameSource, LensActuator
from hil_af.drivers.registry import open_lens, open_rig, open_source, schemes
from hil_af.errors import BadInput, DeviceTimeout, FormatError
from hil_af.frames import grid_rois
from hil_af.optics import LensMap

GRID = grid_rois((256, 384), 3, 4)
REPO = Path(__file__).resolve().parents[1]


def sim(url: str = "sim://?seed=1"):
    return open_rig(url, clock=SimClock())


def test_registered_and_satisfies_protocols():
    assert "sim" in schemes()
    with sim() as rig:
        assert isinstance(rig.source, FrameSource)
        assert isinstance(rig.lens, LensActuator)
        assert rig.source.sensor_hw == (256, 384)
        assert rig.lens.range == (0.0, 1023.0)
        assert isinstance(rig.lens_map, LensMap)
        pos = rig.slice_positions()
        assert len(pos) == 49 and pos[0] == 100 and pos[-1] == 900
        assert rig.lens_map.to_dioptres(pos[1]) - rig.lens_map.to_dioptres(pos[0]) == pytest.approx(0.25)
    clock = SimClock()
    assert isinstance(open_source("sim://?seed=1", clock=clock), FrameSource)
    assert isinstance(open_lens("sim://?seed=1", clock=clock), LensActuator)


def test_profile_by_name_and_by_url():
    with open_rig("sim-wide", clock=SimClock()) as rig:
        assert rig.name == "sim-wide"
        assert len(rig.lens_map.dioptres) == 3
        assert rig.profile["af"]["slices"] == 49
        assert rig.source.params.field_curvature_dioptres == pytest.approx(0.8)
    with sim("sim://?profile=sim-default") as rig:
        assert rig.name == "sim-default"


def test_custom_profile_file_drives_the_sim(tmp_path, monkeypatch):
    text = (REPO / "calibration" / "rigs" / "sim-default.toml").read_text()
    text = text.replace('source = "sim://?profile=sim-default"', 'source = "sim://?seed=4"')
    text = text.replace("field_curvature_dioptres = 0.30", "field_curvature_dioptres = 1.25")
    path = tmp_path / "my-sim.toml"
    path.write_text(text.replace('name = "sim-default"', 'name = "my-sim"'))
    with open_rig(str(path), clock=SimClock()) as rig:
        assert rig.name == "my-sim" and rig.source.params.field_curvature_dioptres == 1.25
    path.write_text(text.replace("[sim]\n", "[sim]\nbogus_knob = 3\n"))
    with pytest.raises(FormatError, match="bogus_knob"):
        open_rig(str(path), clock=SimClock())
    # a profile folder without sim-default still opens a bare sim:// URL (shipped defaults)
    monkeypatch.setenv("HIL_AF_RIGS", str(tmp_path / "empty"))
    with open_rig("sim://?seed=1", clock=SimClock()) as rig:
        assert rig.name == "sim-default" and len(rig.slice_positions()) == 49


@pytest.mark.parametrize(
    "url, words",
    [
        ("sim://?seed=1&bogus=2", ["bogus"]),
        ("sim://?scene=forest", ["forest", "cards"]),
        ("sim://?seed=abc", ["seed"]),
        ("sim://?fault_p=0.5", ["fault_frame"]),
        ("sim://?fault_frame=smoke&fault_p=0.1", ["smoke"]),
        ("sim://?fault_frame=black&fault_p=1.5", ["fault_p"]),
        ("sim://?fault_stall=-0.1", ["fault_stall"]),
        ("sim://?scene=chart&depth_m=-1", ["depth_m"]),
        ("sim://?profile=no-such-rig", ["no-such-rig"]),
        ("sim://?size=big", ["size", "HxW"]),
        ("sim://?size=16x4000", ["size", "32..2048"]),
    ],
)
def test_bad_urls_are_rejected_naming_the_problem(url, words):
    with pytest.raises(BadInput) as e:
        sim(url)
    for w in words:
        assert w in str(e.value)


def test_frame_fields():
    clock = SimClock(10.0)
    with open_rig("sim://?seed=1&scene=flat-centre", clock=clock) as rig:
        rig.lens.move_to(300)
        clock.sleep(rig.lens.settle_time_s)
        f1 = rig.source.capture()
        f2 = rig.source.capture()
        assert f1.shape == (256, 384) and f1.sensor_hw == (256, 384) and f1.origin == (0, 0)
        assert f1.left.dtype == np.float32
        assert f1.timestamp_s == pytest.approx(10.0 + rig.lens.settle_time_s)
        assert f2.timestamp_s - f1.timestamp_s == pytest.approx(rig.source.params.frame_time_s)
        assert abs(f1.lens_position - 300) < 2.5
        assert f1.metadata["scene"] == "flat-centre:1"


def test_flat_centre_scene_has_a_textureless_centre_card():
    from hil_af.frames import centre_roi

    with open_rig("sim://?seed=1&scene=flat-centre&noise=0", clock=SimClock()) as rig:
        rig.lens.move_to(rig.truth(centre_roi((256, 384)))[0])
        rig.clock.sleep(rig.lens.settle_time_s)
        f = rig.source.capture()
        cards = rig.source.scene.card_of_cell
        assert cards[1, 1] == cards[1, 2] and np.sum(cards == cards[1, 1]) == 2
        flat = f.crop(centre_roi((256, 384)))[0]
        # only the smooth vignetting: no second differences beyond rounding
        assert np.abs(np.diff(flat, 2, axis=0)).max() <= 2 and np.abs(np.diff(flat, 2, axis=1)).max() <= 2
        for i in (0, 1, 2, 3, 8, 9, 10, 11):
            patch = f.crop(GRID[i])[0]
            assert np.abs(np.diff(patch, 2, axis=1)).max() > 10, i


def test_vcm_settles_exponentially_and_frames_use_the_actual_position():
    clock = SimClock()
    with open_rig("sim://?seed=1&scene=chart&depth_m=0.3&noise=0", clock=clock) as rig:
        lens, cam = rig.lens, rig.source
        tau = cam.params.vcm_tau_s
        assert lens.settle_time_s == pytest.approx(cam.params.vcm_settle_taus * tau)
        lens.move_to(300)
        clock.sleep(lens.settle_time_s * 4)
        start = lens.actual_position
        lens.move_to(700)
        assert lens.position == 700
        assert lens.actual_position == pytest.approx(start)  # no time passed yet
        clock.sleep(tau)
        mid = lens.actual_position
        final = 700 - cam.params.vcm_hysteresis_codes
        assert mid == pytest.approx(final + (start - final) * np.exp(-1.0), abs=1e-6)
        f = cam.capture()
        assert start + 50 < f.lens_position < final - 50
        assert f.lens_position == pytest.approx(mid)
        # the image is the one at the intermediate position, not at the target
        at_mid, _ = cam.render(f.lens_position)
        at_target, _ = cam.render(final)
        err_mid = np.abs(f.left - at_mid).mean()
        err_target = np.abs(f.left - at_target).mean()
        assert err_mid < 0.6 < 5 * err_mid < err_target
        clock.sleep(lens.settle_time_s)
        assert abs(lens.actual_position - final) < 0.01 * 400


def test_repeated_captures_reuse_the_render_but_not_the_noise_and_render_returns_copies():
    clock = SimClock()
    with open_rig("sim://?seed=1", clock=clock) as rig:
        rig.lens.move_to(420)
        clock.sleep(1.0)
        a, b = rig.source.capture(), rig.source.capture()
        assert a.lens_position == b.lens_position and not np.array_equal(a.left, b.left)
        assert abs(float((a.left - b.left).mean())) < 0.2  # same scene and focus, fresh noise
        left, _ = rig.source.render(a.lens_position)
        left[:] = 0  # the caller's copy: must not leak into later frames
        assert rig.source.capture().left.mean() > 100


def test_vcm_hysteresis_depends_on_direction_of_approach():
    clock = SimClock()
    with open_rig("sim://?seed=1", clock=clock) as rig:
        lens = rig.lens
        h = rig.source.params.vcm_hysteresis_codes
        assert 1 <= h <= 2
        ends = {}
        for came_from in (400, 800):
            lens.move_to(came_from)
            clock.sleep(1.0)
            lens.move_to(600)
            clock.sleep(1.0)
            assert lens.position == 600
            ends[came_from] = lens.actual_position
        assert ends[400] == pytest.approx(600 - h) and ends[800] == pytest.approx(600 + h)


@pytest.mark.parametrize("bad", [-1, 1023.5, 5000, float("nan"), "abc", None])
def test_vcm_range_check(bad):
    with sim() as rig:
        with pytest.raises(BadInput) as e:
            rig.lens.move_to(bad)
        assert repr(bad) in str(e.value) or str(bad) in str(e.value)
        if isinstance(bad, (int, float)) and bad == bad:
            assert "[0, 1023]" in str(e.value)
        assert rig.lens.position == rig.source.params.vcm_start_code  # nothing moved


def capture_series(url: str, n: int = 2) -> list:
    with sim(url) as rig:
        return [rig.source.capture() for _ in range(n)]


def test_seeds_are_deterministic_and_distinct():
    a = capture_series("sim://?seed=7")
    b = capture_series("sim://?seed=7")
    c = capture_series("sim://?seed=8")
    for fa, fb in zip(a, b):
        assert np.array_equal(fa.left, fb.left) and np.array_equal(fa.right, fb.right)
    assert not np.array_equal(a[0].left, a[1].left)  # noise advances per capture
    assert np.abs(a[0].left - c[0].left).mean() > 10  # another scene


def test_change_scene_is_seeded_and_changes_truth():
    with sim("sim://?seed=3") as r1, sim("sim://?seed=3") as r2:
        t0 = r1.truth(GRID)
        lab = r1.change_scene(5)
        assert lab == "cards-5" and r1.source.capture().metadata["scene"] == "cards-5"
        assert r2.change_scene(5) == lab
        assert np.array_equal(r1.truth(GRID), r2.truth(GRID))
        assert not np.allclose(r1.truth(GRID), t0)
        r1.change_scene(6)
        assert not np.allclose(r1.truth(GRID), r2.truth(GRID))


def test_truth_includes_field_curvature_and_dioptres_are_consistent():
    with sim("sim://?seed=1&scene=chart&depth_m=1.0") as rig:
        d = rig.source.truth_dioptres(GRID)
        codes = rig.truth(GRID)
        assert np.allclose(rig.lens_map.to_code(d), codes)
        k = rig.source.params.field_curvature_dioptres
        # one plane: corners need the lens focused nearer-to-infinity by the curvature
        assert d[5] - d[0] > 0.4 * k
        assert np.all(d <= 1.0 + 1e-9) and d.max() == pytest.approx(1.0 - k * ((0.25**2 + 0.0**2) / 2), abs=0.02)


def test_fault_frames_fire_at_the_configured_rate():
    with sim("sim://?seed=2&fault_frame=black&fault_p=0.5") as rig:
        kinds = [rig.source.capture().metadata["fault"] for _ in range(100)]
    n = sum(k == "black" for k in kinds)
    assert 30 <= n <= 70, n
    with sim("sim://?seed=2&fault_frame=saturated&fault_p=1") as rig:
        f = rig.source.capture()
        assert np.all(f.left == f.white_level) and np.all(f.right == f.white_level)
    with sim("sim://?seed=2&fault_frame=flat&fault_p=1&noise=0") as rig:
        f = rig.source.capture()
        assert np.abs(np.diff(f.left, axis=1)).max() <= 2
    with sim("sim://?seed=2&fault_frame=timeout&fault_p=1") as rig:
        t0 = rig.clock.monotonic()
        with pytest.raises(DeviceTimeout):
            rig.source.capture()
        assert rig.clock.monotonic() > t0


def test_stall_faults_fire_at_the_configured_rate():
    clock = SimClock()
    with open_rig("sim://?seed=2&fault_stall=0.3", clock=clock) as rig:
        stalled = 0
        for i in range(100):
            target = 200 + (i % 2) * 500
            rig.lens.move_to(target)
            clock.sleep(rig.lens.settle_time_s * 2)
            assert rig.lens.position == target
            stalled += abs(rig.lens.actual_position - target) > 3
    assert 15 <= stalled <= 45, stalled
