"""Reliability: faults during focus cycles end in a retry that succeeds or a clear Failed with a reason.

Each test drives the daemon's AF service (the code behind the socket, with
the real controller) on the simulated camera, with faults injected at the
boundary: EIO on a fake I2C bus under the real DW9807 driver, lost / garbled /
corrupted replies on a fake serial port under the real bridge driver and
firmware, and the sim's own stall / frame fault keys.  After every cycle the
service must still answer, and the lens must be at rest where it was last
commanded (or parked).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from _fault_rigs import bridge_rig, focus, i2c_rig, service, sim_rig
from hil_af.daemon.protocol import Request
from hil_af.frames import centre_roi

SLICE = 800 / 48  # codes between AF slices (sim-default)
CENTRE = centre_roi((256, 384))


def truth(rig) -> float:
    return float(rig.truth(CENTRE)[0])


def assert_clear(reply: dict, rig) -> str:
    """A reply is Focused near the truth, or Failed with a reason; returns the state."""
    assert "internal error" not in reply.get("error", ""), reply
    if reply["ok"]:
        assert reply["state"] == "Focused"
        assert abs(reply["position"] - truth(rig)) <= 2 * SLICE, (reply, truth(rig))
        return "Focused"
    assert reply.get("state") == "Failed" and reply.get("reason"), reply
    assert reply["error"] == f"focus failed: {reply['reason']}"
    return "Failed"


def assert_chip_at_rest(rig, model) -> None:
    """The chip holds exactly the code the driver last commanded (no half-done ramp)."""
    assert model.code == rig.lens.position


def assert_still_serving(svc) -> None:
    st = svc.handle(Request("status"))
    assert st["ok"] and st["state"] in ("Focused", "Failed", "Idle")


# ------------------------------------------------------------------ I2C bus faults


def test_i2c_eio_burst_is_retried_and_the_cycle_focuses():
    rig, bus, model = i2c_rig()
    svc = service(rig)
    bus.arm(after=25, n=3)  # 3 failed transfers in a row, mid-sweep; the driver tries 4 times
    r = focus(svc)
    assert assert_clear(r, rig) == "Focused"
    assert bus.failures == 3
    assert_chip_at_rest(rig, model)
    assert not model.violations


def test_i2c_persistent_eio_fails_clearly_then_recovers_when_the_bus_does():
    rig, bus, model = i2c_rig()
    svc = service(rig)
    bus.arm(after=25, n=10**6)
    r = focus(svc)
    assert assert_clear(r, rig) == "Failed"
    assert r["reason"].startswith("lens move to ") and "failed after 4 tries" in r["reason"]
    assert "dw9807" in r["reason"] and "Remote I/O error" in r["reason"]
    assert_chip_at_rest(rig, model)  # still where the last successful write put it
    assert_still_serving(svc)
    bus.fail_next = 0  # the bus comes back
    bus._plan.clear()
    assert assert_clear(focus(svc), rig) == "Focused"
    assert_chip_at_rest(rig, model)


def test_i2c_stop_parks_and_powers_down_the_chip():
    rig, bus, model = i2c_rig()
    svc = service(rig)
    assert focus(svc)["ok"]
    focused_at = model.code
    assert focused_at != 0
    assert svc.close() == focused_at  # the position read just before the driver parked it
    assert model.code == 0 and not model.powered and bus.closed  # DW9807 parks at code 0


# ------------------------------------------------------------------ serial bridge faults


@pytest.mark.parametrize("fault", ["drop", "garble", "corrupt", "stale"])
def test_serial_bad_replies_are_retried_and_the_cycle_focuses(fault):
    rig, port, model = bridge_rig()
    svc = service(rig)
    setattr(port, fault, 2)  # the next 2 replies are lost / noise / fail their checksum / stale (3 tries)
    r = focus(svc)
    assert assert_clear(r, rig) == "Focused", r
    assert getattr(port, fault) == 0  # every injected fault was consumed by the cycle
    assert rig.lens.retries + rig.lens.dropped >= 2
    assert_chip_at_rest(rig, model)


def test_serial_silent_bridge_fails_with_a_timeout_reason_then_recovers():
    rig, port, model = bridge_rig()
    svc = service(rig)
    assert focus(svc)["ok"]
    port.drop = 10**6
    r = focus(svc)
    assert assert_clear(r, rig) == "Failed"
    assert "timed out waiting for the reply" in r["reason"] and "failed after 3 tries" in r["reason"]
    assert_still_serving(svc)
    port.drop = 0
    assert assert_clear(focus(svc), rig) == "Focused"
    assert_chip_at_rest(rig, model)


def test_serial_garbage_forever_is_a_device_failure_not_a_timeout():
    rig, port, model = bridge_rig()
    svc = service(rig)
    port.garble = 10**6
    r = focus(svc)
    assert assert_clear(r, rig) == "Failed"
    assert "failed after 3 tries" in r["reason"] and "timed out" not in r["reason"]
    port.garble = 0
    assert assert_clear(focus(svc), rig) == "Focused"


# ------------------------------------------------------------------ frames


def test_frame_timeouts_are_retried_or_fail_clearly():
    rig = sim_rig("fault_frame=timeout&fault_p=0.3")
    svc = service(rig)
    states = []
    for i in range(4):
        rig.change_scene(i)
        r = focus(svc)
        states.append(assert_clear(r, rig))
        if not r["ok"]:
            assert r["reason"].startswith("capture timed out 3 times")
    assert rig.source.faults > 0 and "Focused" in states
    assert_still_serving(svc)


def test_frames_that_never_come_fail_clearly():
    rig = sim_rig("fault_frame=timeout&fault_p=1")
    svc = service(rig)
    r = focus(svc)
    assert assert_clear(r, rig) == "Failed" and r["reason"].startswith("capture timed out 3 times")
    assert_still_serving(svc)


@pytest.mark.parametrize("kind, reason", [("black", "black frame (mean "), ("saturated", "saturated frame in 3 captures"),
                                          ("flat", "no contrast peak")])
def test_every_frame_bad_fails_with_a_reason(kind, reason):
    rig = sim_rig(f"fault_frame={kind}&fault_p=1")
    svc = service(rig)
    r = focus(svc)
    assert assert_clear(r, rig) == "Failed", r
    assert r["reason"].startswith(reason), r["reason"]
    assert_still_serving(svc)


@pytest.mark.parametrize("kind", ["black", "saturated", "flat"])
def test_some_bad_frames_focus_near_the_truth_or_fail_clearly(kind):
    rig = sim_rig(f"fault_frame={kind}&fault_p=0.2")
    svc = service(rig)
    for i in range(3):
        rig.change_scene(i)
        assert_clear(focus(svc), rig)
    assert rig.source.faults > 0


# ------------------------------------------------------------------ a stalled lens


def test_stalled_lens_fails_with_a_reason_and_is_left_at_rest():
    rig = sim_rig("fault_stall=1")
    svc = service(rig)
    r = focus(svc)
    assert assert_clear(r, rig) == "Failed"
    assert r["reason"].startswith("lens did not reach its target")
    commanded = rig.lens.position
    rig.clock.sleep(1.0)
    a = rig.lens.actual_position
    rig.clock.sleep(1.0)
    assert math.isclose(rig.lens.actual_position, a, abs_tol=1e-6)  # at rest: nothing in flight
    assert rig.lens.position == commanded  # and nothing commanded behind our back
    assert_still_serving(svc)


def test_after_a_stall_clears_the_next_cycle_focuses():
    rig = sim_rig("fault_stall=1")
    svc = service(rig)
    assert focus(svc)["state"] == "Failed"
    rig.lens._fault_stall = 0.0  # the mechanism frees itself
    assert assert_clear(focus(svc), rig) == "Focused"
    assert abs(rig.lens.actual_position - rig.lens.position) <= 3


# ------------------------------------------------------------------ continuous mode under faults


def test_continuous_mode_survives_faults():
    rig = sim_rig("fault_frame=timeout&fault_p=0.3&fault_stall=0.05")
    svc = service(rig)
    svc.handle(Request("mode", mode="continuous"))
    ran = 0
    for i in range(20):
        if i % 10 == 0:
            rig.change_scene(i)
        ran += svc.continuous_tick()
    assert ran == 20
    st = svc.handle(Request("status"))
    assert st["ok"] and st["mode"] == "continuous" and st["counts"]["focus"] >= 1
    assert np.isfinite(st["position"])
