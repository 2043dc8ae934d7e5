"""``hil-af serve`` end to end: a subprocess on the simulated rig with the real controller.

Each test starts ``python -m hil_af.cli serve sim://... --socket ...`` with a
NOTIFY_SOCKET bound here and WATCHDOG_USEC set, checks READY=1 and the
watchdog pings, drives it over the socket and stops it with SIGTERM.
The sim runs on virtual time (``--clock sim``) so focus cycles are quick.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from _daemon_util import REPO, DaemonProcess, short_dir
from hil_af.clock import SimClock
from hil_af.drivers.registry import open_rig
from hil_af.frames import centre_roi

SPACING = 800 / 48  # codes between AF slices of sim-default


def _truth(url: str, roi) -> float:
    rig = open_rig(url, clock=SimClock())
    try:
        return float(rig.truth(roi)[0])
    finally:
        rig.close()


def test_serve_lifecycle_ready_watchdog_requests_sigterm():
    url = "sim://?seed=1"
    with DaemonProcess(url, watchdog_usec=400_000) as d:
        d.wait_ready()
        assert stat.S_IMODE(os.lstat(d.socket).st_mode) == 0o660
        t0 = time.monotonic()
        assert d.notify.wait_for("WATCHDOG=1", 5, n=3, since=t0), d.stderr()  # every 0.2 s
        assert any(ln.startswith("STATUS=Idle mode=single method=cdaf") for ln in d.notify.lines())
        with d.client() as c:
            st = c.ask({"cmd": "status"})
            assert st["ok"] and st["state"] == "Idle" and st["mode"] == "single" and st["method"] == "cdaf"
            f = c.ask({"cmd": "focus", "id": "f1"})
            assert f["ok"] and f["id"] == "f1" and f["state"] == "Focused", f
            assert {"position", "dioptres", "captures", "moves", "elapsed_s", "method"} <= set(f)
            assert abs(f["position"] - _truth(url, centre_roi((256, 384)))) <= 2 * SPACING
            roi = [16, 16, 64, 64]
            f2 = c.ask({"cmd": "focus", "roi": roi, "method": "cdaf"})
            assert f2["ok"] and abs(f2["position"] - _truth(url, [roi])) <= 2 * SPACING
            outside = c.ask({"cmd": "focus", "roi": [350, 0, 64, 64]})
            assert outside["ok"] is False and "not inside the 384x256 view" in outside["error"]
            assert c.ask({"cmd": "mode", "mode": "manual"}) == {"ok": True, "mode": "manual", "state": "Idle"}
            mv = c.ask({"cmd": "move", "position": 250})
            assert mv["ok"] and abs(mv["position"] - 250) < 1e-6
            assert "outside the lens range" in c.ask({"cmd": "move", "position": 2000})["error"]
            assert "unknown cmd" in c.ask({"cmd": "reboot"})["error"]
            assert c.ask(b"\x00\x01 not json")["ok"] is False
            st = c.ask({"cmd": "status"})
            assert st["ok"] and st["mode"] == "manual" and abs(st["position"] - 250) < 1e-6
            assert st["counts"]["focused"] == 2 and st["counts"]["errors"] == 4
        assert any(ln.startswith("STATUS=Idle mode=manual") for ln in d.notify.lines())
        assert d.terminate() == 0, d.stderr()
        assert not os.path.exists(d.socket)
        assert "STOPPING=1" in d.notify.lines()
        assert "stopped; lens at" in d.stderr()


def test_several_clients_and_continuous_mode_then_stop_mid_cycle():
    with DaemonProcess("sim://?seed=2", "--park", "0") as d:
        d.wait_ready()
        out: list[dict] = []

        def worker(k: int) -> None:
            with d.client() as c:
                for i in range(2):
                    out.append(c.ask({"cmd": "focus", "id": f"{k}.{i}"}))
                out.append(c.ask({"cmd": "status"}))

        ts = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert len(out) == 9 and all(r["ok"] for r in out), out
        assert sorted(r["id"] for r in out if "id" in r) == [f"{k}.{i}" for k in range(3) for i in range(2)]
        with d.client() as c:
            if (REPO / "calibration" / "examples" / "sim-default" / "cal.json").exists():  # the profile's calibration
                p = c.ask({"cmd": "focus", "method": "pdaf"})
                assert p["method"] == "pdaf" and p["state"] in ("Focused", "Failed"), p
            assert c.ask({"cmd": "mode", "mode": "continuous"})["ok"]
            time.sleep(0.5)
            st = c.ask({"cmd": "status"})
            assert st["mode"] == "continuous" and st["state"] in ("Focused", "Scanning", "Idle")
        assert d.terminate() == 0, d.stderr()
        assert not os.path.exists(d.socket)
        assert "stopped; lens at 0" in d.stderr()  # parked at --park 0


def test_sighup_reloads_profile_and_a_broken_profile_keeps_the_old_setup():
    work = short_dir()
    prof = Path(work) / "rig.toml"
    shutil.copy(REPO / "calibration" / "rigs" / "sim-default.toml", prof)
    try:
        with DaemonProcess(str(prof)) as d:
            d.wait_ready()
            d.proc.send_signal(signal.SIGHUP)
            assert d.notify.wait_for("RELOADING=1", 10), d.stderr()
            assert d.notify.wait_for("READY=1", 10, n=2), d.stderr()
            with d.client() as c:
                assert c.ask({"cmd": "status"})["counts"]["reloads"] == 1
            prof.write_text("[rig\nbroken")
            d.proc.send_signal(signal.SIGHUP)
            assert d.notify.wait_for("READY=1", 10, n=3), d.stderr()
            assert any("reload failed" in ln and "not valid TOML" in ln for ln in d.notify.lines())
            with d.client() as c:
                assert c.ask({"cmd": "focus"})["state"] == "Focused"
                assert c.ask({"cmd": "status"})["counts"]["reloads"] == 1
            assert d.terminate() == 0
    finally:
        shutil.rmtree(work)


@pytest.mark.parametrize("args, code, fragment", [
    (["sim://?seed=1&bogus=1"], 2, "unknown query parameter"),
    (["nosuch://x"], 2, "unknown driver scheme"),
    (["sim://?seed=1", "--method", "pdaf", "--calibration", "/nonexistent/CAL.json"], 2, "CAL.json"),
    (["sim://?seed=1", "--method", "pdaf", "--calibration", "BADCAL"], 2, "not a valid calibration file"),
    (["sim://?seed=1", "--method", "pe2", "--model", "/nonexistent"], 2, "model card"),
])
def test_startup_failures_exit_with_a_message_and_leave_no_socket(args, code, fragment):
    d = short_dir()
    sock = os.path.join(d, "af.sock")
    bad = Path(d) / "CAL.json"
    bad.write_text('{"format": "hil-af-calibration", "version": 1')  # truncated
    args = [str(bad) if a == "BADCAL" else a for a in args]
    cmd = [sys.executable, "-m", "hil_af.cli", "serve", *args, "--socket", sock, "--clock", "sim"]
    if "--method" not in args:
        cmd += ["--method", "cdaf"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO,
                       env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"})
    assert p.returncode == code, p.stderr
    assert fragment in p.stderr and "Traceback" not in p.stderr
    assert not os.path.exists(sock)
    shutil.rmtree(d)


def test_default_method_pe2_loads_its_model_before_ready():
    if not (REPO / "models" / "card.json").exists():
        pytest.skip("no shipped model in models/ yet (hil-af train writes models/card.json)")
    with DaemonProcess("sim://?seed=3", method="pe2") as d:
        d.wait_ready(timeout=120)
        with d.client() as c:
            f = c.ask({"cmd": "focus"})
            assert f["method"] == "pe2" and f["state"] in ("Focused", "Failed"), f
        assert d.terminate() == 0, d.stderr()


def test_sighup_reloads_the_calibration_file():
    src = REPO / "calibration" / "examples" / "sim-default"
    if not (src / "cal.json").exists():
        pytest.skip("no shipped sim calibration (scripts/make_calibrations.sh writes calibration/examples)")
    work = short_dir()
    try:
        for name in ("cal.json", "flat.npz"):
            shutil.copy(src / name, Path(work) / name)
        cal = Path(work) / "cal.json"
        good = cal.read_text()
        with DaemonProcess("sim://?seed=2", "--calibration", str(cal), method="pdaf") as d:
            d.wait_ready()
            with d.client() as c:
                assert c.ask({"cmd": "focus"})["method"] == "pdaf"
            cal.write_text(good[: len(good) // 2])  # a half-written calibration
            d.proc.send_signal(signal.SIGHUP)
            assert d.notify.wait_for("READY=1", 10, n=2), d.stderr()
            assert any("reload failed" in ln and "not a valid calibration file" in ln for ln in d.notify.lines())
            with d.client() as c:  # still serving with the calibration it had
                assert c.ask({"cmd": "focus"})["method"] == "pdaf"
                assert c.ask({"cmd": "status"})["counts"]["reloads"] == 0
            cal.write_text(good)
            d.proc.send_signal(signal.SIGHUP)
            assert d.notify.wait_for("READY=1", 10, n=3), d.stderr()
            with d.client() as c:
                assert c.ask({"cmd": "status"})["counts"]["reloads"] == 1
            assert d.terminate() == 0
    finally:
        shutil.rmtree(work)
