"""What ``hil-af serve`` checks when it starts.

``--calibration`` is sorted by the kind the file records, as focus and eval do
(docs/cli.md "Methods": a global one serves pdaf-global, a per-position one pdaf and hybrid).
Before, serve handed any --calibration to the controller as the per-position one: a global file
was used by ``pdaf`` and ignored by ``pdaf-global``, so on a rig profile without a [calibration]
table ``serve RIG --calibration CALG.json --method pdaf-global`` exited 2 asking for
``--global-calibration``, an option serve does not have.
"""

from __future__ import annotations

import pytest

from _daemon_util import REPO, DaemonProcess
from hil_af.clock import SimClock
from hil_af.drivers.registry import open_rig
from hil_af.frames import centre_roi

# sim-pixel's profile has no [calibration] table: whatever pdaf-global uses comes from --calibration
RIG = "sim://?seed=1&profile=sim-pixel"
GLOBAL = REPO / "calibration" / "examples" / "sim-default" / "cal-global.json"  # "kind": "global"


def test_a_global_file_given_as_calibration_serves_pdaf_global():
    with open_rig(RIG, clock=SimClock()) as rig:
        truth = float(rig.truth(centre_roi((256, 384)))[0])
        spacing = 800 / 48  # codes per AF slice: 49 slices over [100, 900]
    with DaemonProcess(RIG, "--calibration", str(GLOBAL), method="pdaf-global") as d:
        d.wait_ready()
        with d.client() as c:
            f = c.ask({"cmd": "focus"})
        assert f["ok"] and f["method"] == "pdaf-global", f
        # a calibration of another camera: the answer only has to be a focus, not the best one
        assert f["state"] == "Focused" and abs(f["position"] - truth) <= 6 * spacing, (f, truth)
        assert d.terminate() == 0, d.stderr()


@pytest.mark.parametrize("park", ["5000", "-1", "nan"])
def test_a_park_position_outside_the_lens_range_is_refused_at_start(park):
    # the sim VCM takes codes 0..1023.  Before, the daemon served, and only on SIGTERM
    # failed to park ("parking the lens failed ...", exit 1), possibly hours later
    with DaemonProcess("sim://?seed=1", "--park", park, method="cdaf") as d:
        assert d.proc.wait(30) == 2, d.stderr()
        err = d.stderr()
        assert err.startswith("hil-af serve: error: --park") and "[0, 1023]" in err and err.count("\n") == 1, err
        assert "READY=1" not in d.notify.lines()
