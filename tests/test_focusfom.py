"""picamera2-fom:// (ISP focus statistics via Picamera2) on the fake Picamera2 over the simulator."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from hil_af.cli import main
from hil_af.clock import SimClock
from hil_af.controller.focus_stats import region_weights
from hil_af.drivers import fake_picamera2_fom as fake
from hil_af.drivers.picamera2_focusfom import pisp_regions, vc4_regions
from hil_af.drivers.registry import open_rig
from hil_af.frames import centre_roi


@pytest.fixture
def sim():
    with open_rig("sim://?seed=3", clock=SimClock()) as rig:
        yield rig


def _install(monkeypatch, rig, **kw):
    mod = fake.fake_picamera2_fom_module(rig, **kw)
    monkeypatch.setitem(sys.modules, "picamera2", mod)
    return mod


def test_region_weights_are_libcamera_computeweights():
    # 4 x 3 regions over 400 x 300: cells 100 x 100; a window on the middle two cells of the middle row
    w = region_weights((100, 100, 200, 100), 3, 4, (0, 0, 400, 300))
    assert w.tolist() == [[0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    half = region_weights((150, 100, 100, 50), 3, 4, (0, 0, 400, 300))  # half of each cell's width, half height
    assert half[1].tolist() == [0, 0.25, 0.25, 0]
    # no overlap: libcamera's default window (middle half width of the middle third height)
    assert region_weights((0, 0, 10, 10), 3, 4, (500, 500, 400, 300)).tolist() == w.tolist()


def test_stats_blobs_decode_at_the_kernel_struct_offsets():
    vals = np.arange(12, dtype=np.uint64).reshape(3, 4) * np.uint64(123_457)
    assert vc4_regions(fake.pack_vc4_stats(vals)).tolist() == (vals // 1000).astype(float).tolist()
    foms = (np.arange(64, dtype=np.uint64) << np.uint64(21)).reshape(8, 8)
    assert pisp_regions(fake.pack_pisp_stats(foms)).tolist() == (foms >> np.uint64(20)).astype(float).tolist()
    assert fake.focus_fom(np.arange(12).reshape(3, 4)) == (5 + 6) // 2  # ipa_base.cpp: centre regions (1,1), (1,2)


@pytest.mark.parametrize("platform", ["vc4", "pisp"])
def test_focus_fom_peaks_where_the_image_is_sharp(sim, platform):
    cam = fake.fake_picamera2_fom_module(sim, platform=platform).Picamera2(0)
    cam.configure(cam.create_video_configuration())
    cam.start()
    truth_d = float(sim.source.truth_dioptres(centre_roi(sim.source.sensor_hw)[None])[0])
    foms = {}
    for off in (-2.0, 0.0, 2.0):
        cam.set_controls({"LensPosition": truth_d + off})
        cam.capture_metadata()  # the lens settles during this frame
        foms[off] = cam.capture_metadata()["FocusFoM"]
    assert foms[0.0] > 3 * max(foms[-2.0], foms[2.0])


@pytest.mark.parametrize("platform,regions", [("vc4", "auto"), ("pisp", "auto"), ("vc4", "fom")])
def test_hil_af_focus_end_to_end_on_focus_statistics(sim, monkeypatch, capsys, platform, regions):
    mod = _install(monkeypatch, sim, platform=platform)
    url = "picamera2-fom://0" + ("?regions=fom" if regions == "fom" else "")
    rc = main(["focus", url, "--lens", "libcamera-lens://0", "--method", "cdaf-fast", "--clock", "sim", "--json"])
    out = json.loads(capsys.readouterr().out)
    truth_d = float(sim.source.truth_dioptres(centre_roi(sim.source.sensor_hw)[None])[0])
    assert rc == 0 and out["state"] == "Focused"
    assert abs(out["position"] - truth_d) <= 0.25  # within one AF slice (1/4 dioptre)
    enabled = [c for c in mod.calls if c[0] == "set_controls" and "StatsOutputEnable" in c[1]]
    assert bool(enabled) == (regions == "auto")
    assert ("close",) in mod.calls  # the shared camera was released


def test_methods_needing_dual_pixel_views_are_refused(sim, monkeypatch, capsys):
    _install(monkeypatch, sim)
    rc = main(["focus", "picamera2-fom://0", "--lens", "libcamera-lens://0", "--method", "pe2", "--clock", "sim"])
    assert rc == 2 and "focus statistics only" in capsys.readouterr().err


def test_flat_scene_gives_a_clear_failed(monkeypatch, capsys):
    with open_rig("sim://?seed=3&scene=white", clock=SimClock()) as white:
        _install(monkeypatch, white)
        rc = main(["focus", "picamera2-fom://0", "--lens", "libcamera-lens://0", "--method", "cdaf-fast",
                   "--clock", "sim"])
    assert rc == 1 and "no contrast peak" in capsys.readouterr().err


def test_drivers_lists_the_focusfom_source(capsys):
    assert main(["drivers", "--json"]) == 0
    schemes = json.loads(capsys.readouterr().out)["schemes"]
    assert "FocusFoM" in schemes["picamera2-fom"] and schemes["picamera2-fom"].startswith("[source]")
    assert main(["focus", "picamera2-fom://0?regions=all", "--lens", "libcamera-lens://0"]) == 2
