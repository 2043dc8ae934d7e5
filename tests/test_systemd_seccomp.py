"""The units' syscall filter against a real daemon start, and their runtime directories.

``_seccomp`` applies each unit's ``SystemCallFilter=`` / ``SystemCallErrorNumber=``
the way systemd does (libseccomp, groups from the installed
``systemd-analyze``), so a unit that would kill the daemon with SIGSYS at
start fails here, not on a rig.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import _seccomp as S

UNITS = Path(__file__).resolve().parents[1] / "systemd"
REPO = UNITS.parent
DAEMONS = ("hil-af.service", "hil-af@.service")
ALL = DAEMONS + ("hil-af-calibrate.service",)

needs_harness = pytest.mark.skipif(S.available() is not None, reason=str(S.available()))


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


@needs_harness
def test_the_harness_enforces_the_filter():
    """Negative control: under the units' filter with systemd's default action, a denied syscall
    (mbind, in @resources) kills the process with SIGSYS; with the unit's EPERM it returns -1."""
    allowed, action = S.unit_filter(S.parse_unit(UNITS / "hil-af.service"))
    assert "mbind" not in allowed and "read" in allowed
    nr = {"x86_64": 237, "aarch64": 235}.get(os.uname().machine)
    if nr is None:
        pytest.skip(f"mbind's syscall number on {os.uname().machine} is not listed here")
    code = f"import ctypes; print(ctypes.CDLL(None, use_errno=True).syscall({nr}, 0, 0, 0, 0, 0, 0))"
    killed = subprocess.run(S.wrap([sys.executable, "-c", code], allowed, S.SCMP_ACT_KILL_PROCESS),
                            capture_output=True, text=True, timeout=60)
    assert killed.returncode == -signal.SIGSYS, killed
    denied = subprocess.run(S.wrap([sys.executable, "-c", code], allowed, action), capture_output=True, text=True, timeout=60)
    assert denied.returncode == 0 and denied.stdout.strip() == "-1", denied


@pytest.mark.parametrize("name", ALL)
def test_denied_syscalls_fail_with_eperm_not_sigsys(name):
    u = S.parse_unit(UNITS / name)
    assert u["Service"].get("SystemCallErrorNumber", [None])[-1] == "EPERM"
    mem = u["Service"].get("MemoryMax", [""])[-1]
    assert mem[:-1].isdigit() and mem[-1] in "MG", f"{name}: MemoryMax= must be set (got {mem!r})"


def _request(path: str, obj: dict, timeout: float = 30.0) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall((json.dumps(obj) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


@needs_harness
@pytest.mark.parametrize("name", DAEMONS)
def test_daemon_starts_serves_and_stops_under_the_units_syscall_filter(tmp_path, name):
    """`hil-af serve` (numpy, the PE model through onnxruntime, the socket server) under the unit's
    filter: it answers status and a focus request, then stops cleanly on SIGTERM (exit 0)."""
    allowed, action = S.unit_filter(S.parse_unit(UNITS / name))
    sock = str(tmp_path / "af.sock")
    argv = [sys.executable, "-m", "hil_af.cli", "serve", "sim://?seed=1", "--socket", sock, "--clock", "sim"]
    p = subprocess.Popen(S.wrap(argv, allowed, action), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        deadline = time.monotonic() + 240
        while not os.path.exists(sock):
            assert p.poll() is None, f"daemon died at start under {name}'s filter: rc {p.returncode}\n{p.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "daemon did not start within 240 s"
            time.sleep(0.2)
        st = _request(sock, {"cmd": "status"})
        assert st["ok"], st
        r = _request(sock, {"cmd": "focus", "id": 1}, timeout=120)
        assert r.get("ok") and r.get("state") == "Focused", r
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=60)
        err = p.stderr.read()
        assert rc == 0, f"rc {rc}\n{err[-2000:]}"
        assert "Bad system call" not in err and "Traceback" not in err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_no_unit_removes_another_units_runtime_directory():
    """systemd removes a unit's RuntimeDirectory= (with everything below it) when the unit stops:
    a unit whose directory is the parent of another unit's must preserve it."""
    dirs = {}
    for name in DAEMONS:
        u = S.parse_unit(UNITS / name)
        dirs[name] = (u["Service"]["RuntimeDirectory"][-1].replace("%i", "cam0"),
                      u["Service"].get("RuntimeDirectoryPreserve", ["no"])[-1])
    nested = [(a, b) for a in dirs for b in dirs if a != b and dirs[b][0].startswith(dirs[a][0] + "/")]
    assert nested, "expected hil-af.service's /run/hil-af to be the parent of the instances' directories"
    for parent, child in nested:
        assert dirs[parent][1] in ("yes", "restart"), \
            f"stopping {parent} would remove /run/{dirs[parent][0]} and with it {child}'s socket directory"
        assert dirs[parent][1] == "yes"  # "restart" still removes it on stop
