"""Helpers for the daemon tests: a notify-socket listener, a line client, a subprocess daemon."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def short_dir() -> str:
    """A short temporary directory (Unix socket paths are limited to 107 bytes)."""
    return tempfile.mkdtemp(prefix="hilaf-", dir="/tmp")


class NotifyListener:
    """Binds a datagram socket as $NOTIFY_SOCKET and records every message with its arrival time."""

    def __init__(self, path: str):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def lines(self) -> list[str]:
        return [ln for _, m in list(self.messages) for ln in m.split("\n")]

    def count(self, line: str, since: float = 0.0) -> int:
        return sum(ln == line for t, m in list(self.messages) if t >= since for ln in m.split("\n"))

    def wait_for(self, line: str, timeout: float = 20.0, n: int = 1, since: float = 0.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.count(line, since) >= n:
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self._stop.set()
        self._t.join(1)
        self.sock.close()


class Client:
    """One connection speaking JSON lines."""

    def __init__(self, path: str, timeout: float = 30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.rfile = self.sock.makefile("rb")

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> dict[str, Any]:
        line = self.rfile.readline()
        assert line, "connection closed without a reply"
        assert line.endswith(b"\n")
        return json.loads(line)

    def ask(self, obj: dict[str, Any] | str | bytes) -> dict[str, Any]:
        if isinstance(obj, dict):
            obj = json.dumps(obj)
        if isinstance(obj, str):
            obj = obj.encode()
        self.send_raw(obj + b"\n")
        return self.reply()

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class DaemonProcess:
    """``python -m hil_af.cli serve RIG --socket ...`` with a test NOTIFY_SOCKET and watchdog period."""

    def __init__(self, rig: str, *args: str, watchdog_usec: int = 400_000, clock: str = "sim",
                 method: str = "cdaf", env: dict[str, str] | None = None):
        self.dir = short_dir()
        self.socket = os.path.join(self.dir, "af.sock")
        self.notify = NotifyListener(os.path.join(self.dir, "notify.sock"))
        e = {**os.environ, "NOTIFY_SOCKET": self.notify.path, "PYTHONUNBUFFERED": "1", **(env or {})}
        if watchdog_usec:
            e["WATCHDOG_USEC"] = str(watchdog_usec)
        else:
            e.pop("WATCHDOG_USEC", None)
        e.pop("WATCHDOG_PID", None)
        self.log_path = os.path.join(self.dir, "stderr.log")
        self._log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "hil_af.cli", "serve", rig, "--socket", self.socket,
               "--method", method, "--clock", clock, *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._log, env=e, cwd=REPO)

    def wait_ready(self, timeout: float = 60.0) -> None:
        if not self.notify.wait_for("READY=1", timeout):
            raise AssertionError(f"no READY=1 within {timeout} s (rc={self.proc.poll()}); stderr:\n{self.stderr()}")
        assert os.path.exists(self.socket)

    def stderr(self) -> str:
        self._log.flush()
        return Path(self.log_path).read_text(errors="replace")

    def client(self) -> Client:
        return Client(self.socket)

    def terminate(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.notify.close()
        self._log.close()
        for name in ("af.sock", "notify.sock", "stderr.log"):
            try:
                os.unlink(os.path.join(self.dir, name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.dir)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
