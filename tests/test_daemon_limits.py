"""The daemon under hostile clients and files: idle clients, connect bursts, oversized profiles."""

from __future__ import annotations

import shutil
import signal
import socket
import time
from pathlib import Path

from _daemon_util import Client, DaemonProcess, short_dir
from hil_af.daemon.server import LISTEN_BACKLOG
from test_daemon_server import Running

REPO = Path(__file__).resolve().parents[1]


def _read_all(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    buf = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return buf
        buf += chunk


def test_idle_clients_lose_their_slots_and_others_get_in():
    r = Running(max_clients=4)
    r.daemon.idle_timeout_s = 1.5  # long enough that the 5th client arrives while all 4 slots are held, even under load
    try:
        idle = []
        for _ in range(4):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(r.path)
            idle.append(s)
        time.sleep(0.2)
        with r.client() as c:  # every slot is held by a silent client
            assert "too many clients" in c.reply()["error"]
        for s in idle:  # each is told why, then disconnected (EOF), well before the 20 s read timeout
            data = _read_all(s, 20.0)
            assert b"idle for 1.5 s" in data and data.count(b"\n") == 1, data
            s.close()
        with r.client() as c:
            assert c.ask({"cmd": "status"})["ok"]
    finally:
        r.stop()


def test_a_burst_of_connects_is_queued_not_refused():
    """LISTEN_BACKLOG + 40 clients connect at once (non-blocking connects fail with EAGAIN when the
    listen queue is full); every one connects and gets an answer: a reply, or 'too many clients'."""
    assert LISTEN_BACKLOG >= 64
    r = Running(max_clients=8)
    r.daemon.idle_timeout_s = 30.0
    n = min(LISTEN_BACKLOG - 8, 100)
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect(r.path)  # BlockingIOError (EAGAIN) if the backlog were small
            socks.append(s)
        answered, refused, pipe_closed = 0, 0, []
        for s in socks:
            s.setblocking(True)
            s.settimeout(30)
            try:
                s.sendall(b'{"cmd": "status"}\n')
                pipe_closed.append(False)
            except (BrokenPipeError, ConnectionResetError):
                # a refused client may already be closed by the daemon (its refusal line is queued)
                pipe_closed.append(True)
        for s, closed in zip(socks, pipe_closed):
            line = s.makefile("rb").readline()
            assert line.endswith(b"\n"), line
            if b"too many clients" in line:
                refused += 1
            else:
                assert not closed and b'"ok": true' in line.replace(b'"ok":true', b'"ok": true'), line
            answered += 1
            s.close()
        assert answered == n and refused < n
    finally:
        for s in socks:
            s.close()
        r.stop()


def test_reload_of_an_oversized_profile_keeps_the_old_setup_and_stops_on_sigterm():
    work = short_dir()
    prof = Path(work) / "rig.toml"
    shutil.copy(REPO / "calibration" / "rigs" / "sim-default.toml", prof)
    try:
        with DaemonProcess(str(prof)) as d:
            d.wait_ready()
            for bad, rule in (("\n[af]\nslices = 1000000000\n", "[af] slices must be an integer in 2..1024"),
                              ("\n[sim]\nheight = 100000\n", "height, width must be in 32..2048")):
                n_ready = len([ln for ln in d.notify.lines() if "READY=1" in ln])
                prof.write_text(_with_table(prof.read_text(), bad))
                d.proc.send_signal(signal.SIGHUP)
                assert d.notify.wait_for("READY=1", 30, n=n_ready + 1), d.stderr()
                assert any("reload failed" in ln and rule in ln for ln in d.notify.lines()), (rule, d.notify.lines())
                with d.client() as c:
                    assert c.ask({"cmd": "focus"})["state"] == "Focused"
                    assert c.ask({"cmd": "status"})["counts"]["reloads"] == 0
                shutil.copy(REPO / "calibration" / "rigs" / "sim-default.toml", prof)
            assert d.terminate(timeout=30) == 0
    finally:
        shutil.rmtree(work)


def _with_table(text: str, table: str) -> str:
    """``text`` with ``table`` ("[name]\\nkey = value") merged: the key set in that table."""
    lines = table.strip().splitlines()
    name, kv = lines[0], lines[1]
    key = kv.split("=")[0].strip()
    out, inside, done = [], False, False
    for ln in text.splitlines():
        s = ln.strip()
        if s.startswith("["):
            if inside and not done:
                out.append(kv)
                done = True
            inside = s == name
        if inside and s.split("=")[0].strip() == key:
            continue
        out.append(ln)
    if inside and not done:
        out.append(kv)
        done = True
    if not done:
        out += ["", name, kv]
    return "\n".join(out) + "\n"


def test_client_helper_still_works_after_idle_timeouts():
    """Idle timeouts apply between requests only: a client that keeps asking is never cut off."""
    r = Running()
    r.daemon.idle_timeout_s = 0.3
    try:
        with Client(r.path, timeout=10) as c:
            for _ in range(5):
                assert c.ask({"cmd": "status"})["ok"]
                time.sleep(0.1)
    finally:
        r.stop()
