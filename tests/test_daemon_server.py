"""The socket server itself (framing, concurrency, errors, socket file, watchdog), in-process.

The controller here is a small double that records how it is called, because
these tests are about the server: the end-to-end tests with the real
controller and the simulated rig are in test_daemon_e2e.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import threading
import time

import pytest

from _daemon_util import Client, NotifyListener, short_dir
from hil_af.clock import SystemClock
from hil_af.controller.base import AFState, FocusResult
from hil_af.daemon.protocol import MAX_LINE_BYTES
from hil_af.daemon.sdnotify import Notifier
from hil_af.daemon.server import Daemon, prepare_socket_path
from hil_af.daemon.service import AFService, ServiceConfig
from hil_af.drivers.base import Rig
from hil_af.errors import BadInput, DeviceError


class _Lens:
    range = (0.0, 1023.0)
    settle_time_s = 0.0

    def __init__(self):
        self.position = 500.0
        self.moves: list[float] = []
        self.closed = False

    def move_to(self, p: float) -> None:
        self.moves.append(p)
        self.position = p

    def close(self) -> None:
        self.closed = True


class _Source:
    sensor_hw = (256, 384)

    def capture(self):  # pragma: no cover - the double controller never captures
        raise AssertionError("not used")

    def close(self) -> None:
        pass


class DoubleController:
    """Records concurrency; ``script`` holds what the next focus calls do (a result state or an exception)."""

    def __init__(self, rig: Rig, delay_s: float = 0.0):
        self.rig = rig
        self.mode = "single"
        self.state = AFState.IDLE
        self.method = "double"
        self.last = None
        self.delay_s = delay_s
        self.gate = threading.Event()
        self.gate.set()
        self.script: list = []
        self.active = 0
        self.max_active = 0
        self.focus_calls = 0
        self.continuous_calls = 0
        self._mx = threading.Lock()

    def focus(self, rois=None, method=None):
        with self._mx:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.focus_calls += 1
        try:
            self.gate.wait(10)
            time.sleep(self.delay_s)
            what = self.script.pop(0) if self.script else AFState.FOCUSED
            if isinstance(what, Exception):
                raise what
            pos = 100.0 + (0 if rois is None else float(rois[0][0]))
            self.rig.lens.move_to(pos)
            self.state = what
            self.last = FocusResult(state=what, position=pos, method=method or self.method, captures=3, moves=2,
                                    reason="lens stalled" if what == AFState.FAILED else None)
            return self.last
        finally:
            with self._mx:
                self.active -= 1

    def set_mode(self, mode):
        if mode not in ("manual", "single", "continuous"):
            raise BadInput(f"unknown AF mode {mode!r}")
        self.mode = mode

    def move(self, position):
        lo, hi = self.rig.lens.range
        if not lo <= position <= hi:
            raise BadInput(f"position {position!r} is outside the lens range [{lo:g}, {hi:g}]")
        self.rig.lens.move_to(position)
        return position

    def continuous_step(self):
        self.continuous_calls += 1
        return None

    def status(self):
        return {"state": self.state.value, "mode": self.mode, "method": self.method,
                "position": float(self.rig.lens.position), "last": self.last.to_json() if self.last else None}


class Running:
    """A Daemon run() in a thread, with a notify listener; stop() returns the exit code."""

    def __init__(self, park=None, watchdog_usec=100_000, hang_s=60.0, max_clients=32, delay_s=0.0):
        self.dir = short_dir()
        self.path = os.path.join(self.dir, "af.sock")
        self.notify = NotifyListener(os.path.join(self.dir, "n.sock"))
        self.lens = _Lens()
        self.rig = Rig(source=_Source(), lens=self.lens, clock=SystemClock())
        self.ctl = DoubleController(self.rig, delay_s=delay_s)
        svc = AFService(ServiceConfig(rig="double://", park=park, lock_timeout_s=5.0))
        svc.rig, svc.controller = self.rig, self.ctl
        self.service = svc
        env = {"NOTIFY_SOCKET": self.notify.path, "WATCHDOG_USEC": str(watchdog_usec)}
        self.daemon = Daemon(svc, self.path, Notifier(env=env), hang_s=hang_s, max_clients=max_clients,
                             idle_tick_s=0.02, tick_s=0.01)
        self.rc: list[int] = []
        self.thread = threading.Thread(target=lambda: self.rc.append(self.daemon.run()), daemon=True)
        self.thread.start()
        assert self.notify.wait_for("READY=1", 10), "daemon never sent READY=1"

    def client(self) -> Client:
        return Client(self.path, timeout=10)

    def stop(self) -> int:
        self.daemon.request_stop()
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.notify.close()
        return self.rc[0]


@pytest.fixture
def running():
    made: list[Running] = []

    def start(**kw) -> Running:
        r = Running(**kw)
        made.append(r)
        return r

    yield start
    for r in made:
        if r.thread.is_alive():
            r.stop()
        shutil.rmtree(r.dir, ignore_errors=True)


def test_commands_and_replies(running):
    r = running()
    with r.client() as c:
        st = c.ask({"cmd": "status", "id": 1})
        assert st["ok"] and st["id"] == 1 and st["state"] == "Idle" and st["mode"] == "single"
        f = c.ask({"cmd": "focus", "roi": [32, 0, 64, 64], "method": "cdaf"})
        assert f["ok"] and f["state"] == "Focused" and f["position"] == 132.0 and f["method"] == "cdaf"
        assert {"captures", "moves", "elapsed_s", "dioptres"} <= set(f)
        r.ctl.script.append(AFState.FAILED)
        f = c.ask({"cmd": "focus"})
        assert f["ok"] is False and f["state"] == "Failed" and f["reason"] == "lens stalled"
        assert "focus failed: lens stalled" in f["error"]
        m = c.ask({"cmd": "mode", "mode": "manual"})
        assert m == {"ok": True, "mode": "manual", "state": "Failed"}
        mv = c.ask({"cmd": "move", "position": 321})
        assert mv["ok"] and mv["position"] == 321.0 and r.lens.position == 321.0
        bad = c.ask({"cmd": "move", "position": 5000})
        assert bad["ok"] is False and "outside the lens range" in bad["error"]
        assert r.lens.position == 321.0
    assert r.stop() == 0


def test_bad_lines_get_errors_and_the_connection_stays_usable(running):
    r = running()
    with r.client() as c:
        assert "not valid JSON" in c.ask(b"hello")["error"]
        assert "not UTF-8" in c.ask(b"\xff\x00\xfe")["error"]
        assert "unknown cmd" in c.ask({"cmd": "selfdestruct"})["error"]
        assert "empty request" in c.ask(b"")["error"]
        big = c.ask(b'{"cmd":"status","id":"' + b"x" * (3 * MAX_LINE_BYTES) + b'"}')
        assert big["ok"] is False and "too long" in big["error"]
        ok = c.ask({"cmd": "status"})
        assert ok["ok"] and ok["counts"]["errors"] == 5
    # a request cut off by the client closing still gets its reply
    with r.client() as c:
        c.send_raw(b'{"cmd":"status","id":"last"}')
        c.sock.shutdown(socket.SHUT_WR)
        assert c.reply()["id"] == "last"
    assert r.stop() == 0


def test_pipelined_requests_are_answered_in_order(running):
    r = running()
    with r.client() as c:
        c.send_raw(b"".join(b'{"cmd":"status","id":%d}\n' % i for i in range(20)) + b"junk\n" + b'{"cmd":"focus","id":99}\n')
        ids = [c.reply().get("id") for _ in range(22)]
    assert ids == list(range(20)) + [None, 99]
    r.stop()


def test_several_clients_at_once_and_the_rig_is_serialised(running):
    r = running(delay_s=0.02)
    replies: list[dict] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        with r.client() as c:
            for i in range(4):
                rep = c.ask({"cmd": "focus", "id": f"{k}-{i}"})
                with lock:
                    replies.append(rep)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(replies) == 20 and all(x["ok"] for x in replies)
    assert sorted(x["id"] for x in replies) == sorted(f"{k}-{i}" for k in range(5) for i in range(4))
    assert r.ctl.focus_calls == 20
    assert r.ctl.max_active == 1  # never two cycles on the rig at once
    r.stop()


def test_status_answers_while_a_focus_cycle_holds_the_rig(running):
    r = running()
    r.ctl.gate.clear()
    with r.client() as a, r.client() as b:
        a.send_raw(b'{"cmd":"focus","id":"slow"}\n')
        time.sleep(0.1)
        st = b.ask({"cmd": "status"})
        assert st["ok"] and st["busy"] is True
        r.ctl.gate.set()
        assert a.reply()["id"] == "slow"
        assert b.ask({"cmd": "status"})["busy"] is False
    r.stop()


def test_device_and_internal_errors_are_replied_and_serving_goes_on(running):
    r = running()
    r.ctl.script += [DeviceError("i2c: EIO after 3 tries"), RuntimeError("boom")]
    with r.client() as c:
        e1 = c.ask({"cmd": "focus"})
        assert e1["ok"] is False and e1["error"] == "device error: i2c: EIO after 3 tries"
        e2 = c.ask({"cmd": "focus"})
        assert e2["ok"] is False and e2["error"] == "internal error: RuntimeError: boom"
        assert c.ask({"cmd": "focus"})["state"] == "Focused"
        counts = c.ask({"cmd": "status"})["counts"]
        assert counts["device_errors"] == 1 and counts["errors"] == 2
    r.stop()


def test_socket_mode_and_clean_stop(running):
    r = running(park=0.0)
    st = os.lstat(r.path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    c = r.client()  # an idle client must not hold up the stop
    assert r.stop() == 0
    assert not os.path.exists(r.path)
    assert r.lens.moves[-1] == 0.0 and r.lens.closed  # parked, then closed
    try:  # the server closed our connection: EOF (or a reset, depending on timing)
        assert c.rfile.readline() == b""
    except ConnectionResetError:
        pass
    c.close()
    assert "STOPPING=1" in r.notify.lines()


def test_a_lens_that_cannot_park_gives_exit_code_1_and_still_removes_the_socket(running):
    r = running()

    def broken_close():
        raise DeviceError("i2c addr 0x0c (dw9807): write [03 00 00]: failed after 4 tries: EIO")

    r.lens.close = broken_close
    assert r.stop() == 1
    assert not os.path.exists(r.path)
    assert "failed after 4 tries" in r.service.close_error


def test_too_many_clients_get_an_error(running):
    r = running(max_clients=2)
    a, b = r.client(), r.client()
    assert a.ask({"cmd": "status"})["ok"] and b.ask({"cmd": "status"})["ok"]
    with r.client() as c:
        rep = c.reply()
        assert rep["ok"] is False and "too many clients" in rep["error"]
    a.close()
    deadline = time.monotonic() + 20.0  # the daemon frees a's slot once its handler sees EOF
    while True:
        with r.client() as d:
            try:
                rep = d.ask({"cmd": "status"})
            except (BrokenPipeError, ConnectionResetError):  # refused and closed before our request: read why
                rep = d.reply()
        if rep["ok"] or time.monotonic() > deadline:
            break
        assert "too many clients" in rep["error"]
        time.sleep(0.05)
    assert rep["ok"], rep
    b.close()
    r.stop()


def test_watchdog_pings_stop_while_a_rig_call_hangs_and_resume_after(running):
    r = running(watchdog_usec=100_000, hang_s=0.3)  # ping every 0.05 s
    assert r.notify.wait_for("WATCHDOG=1", 5, n=3)
    r.ctl.gate.clear()  # the next focus "hangs" in the driver
    c = r.client()
    c.send_raw(b'{"cmd":"focus"}\n')
    deadline = time.monotonic() + 20.0  # withheld once the call has run hang_s (0.3 s), however loaded the machine
    while not r.daemon.withheld and time.monotonic() < deadline:
        time.sleep(0.02)
    assert r.daemon.withheld
    time.sleep(0.1)  # a ping sent just before the switch has arrived
    t_hung = time.monotonic()
    time.sleep(0.4)
    assert r.notify.count("WATCHDOG=1", since=t_hung) == 0
    assert r.daemon.withheld
    r.ctl.gate.set()
    assert c.reply()["ok"]
    t_back = time.monotonic()
    assert r.notify.wait_for("WATCHDOG=1", 5, n=2, since=t_back)
    c.close()
    r.stop()


def test_continuous_mode_runs_the_control_loop(running):
    r = running()
    with r.client() as c:
        assert c.ask({"cmd": "mode", "mode": "continuous"})["ok"]
        deadline = time.monotonic() + 20.0
        while r.ctl.continuous_calls < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        n = r.ctl.continuous_calls
        assert n >= 5
        mv = c.ask({"cmd": "move", "position": 200})
        assert mv["ok"] is False and "move needs mode manual" in mv["error"] and r.lens.position != 200
        assert c.ask({"cmd": "mode", "mode": "single"})["ok"]
        time.sleep(0.3)  # a step already under way when the mode changed ends
        n2 = r.ctl.continuous_calls
        time.sleep(0.3)
        assert r.ctl.continuous_calls == n2  # the loop only steps in continuous mode
    assert any(ln.startswith("STATUS=Idle mode=continuous") for ln in r.notify.lines())
    r.stop()


def test_socket_path_checks():
    d = short_dir()
    path = os.path.join(d, "x.sock")
    # a stale socket (nobody listening) is replaced
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()
    prepare_socket_path(path)
    assert not os.path.exists(path)
    # a live one is refused
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.listen(1)
    with pytest.raises(BadInput, match="already serving"):
        prepare_socket_path(path)
    s.close()
    os.unlink(path)
    # a regular file is never replaced
    with open(path, "w") as f:
        f.write("precious")
    with pytest.raises(BadInput, match="not a socket"):
        prepare_socket_path(path)
    assert open(path).read() == "precious"
    os.unlink(path)
    with pytest.raises(BadInput, match="directory does not exist"):
        prepare_socket_path(os.path.join(d, "nope", "x.sock"))
    with pytest.raises(BadInput, match="too long"):
        prepare_socket_path("/tmp/" + "a" * 120)
    os.rmdir(d)
