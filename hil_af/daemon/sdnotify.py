"""``sd_notify(3)`` without libsystemd: one datagram per message to ``$NOTIFY_SOCKET``.

systemd's protocol is a newline-separated ``KEY=VALUE`` text sent as one
datagram to the Unix socket named by ``$NOTIFY_SOCKET``; a leading ``@``
names a socket in the abstract namespace (the ``@`` becomes a NUL byte).
Without ``$NOTIFY_SOCKET`` (not started by systemd) every call is a no-op.

The watchdog period comes from ``$WATCHDOG_USEC`` (microseconds), and only
applies when ``$WATCHDOG_PID`` is unset or names this process; the daemon
pings at half that period (as sd_watchdog_enabled(3) recommends).
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Mapping


class Notifier:
    """Sends notifications to the service manager; silent when there is none."""

    def __init__(self, address: str | None = None, env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        addr = address if address is not None else env.get("NOTIFY_SOCKET", "")
        self.address: str | None = addr or None
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.sent = 0
        self.errors = 0
        wd = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        usec = int(wd) if wd.isdigit() else 0
        if pid and (not pid.isdigit() or int(pid) != os.getpid()):
            usec = 0
        self.watchdog_usec = usec

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of $WATCHDOG_USEC), None when off."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec > 0 else None

    def _target(self) -> str | bytes:
        assert self.address is not None
        if self.address.startswith("@"):
            return b"\0" + self.address[1:].encode()
        return self.address

    def notify(self, *lines: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; True when sent (False: no manager, or it failed)."""
        if self.address is None:
            return False
        msg = "\n".join(lines).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(msg, self._target())
            except OSError:
                # The manager went away or the socket is full: never take the daemon down for it.
                self.errors += 1
                return False
            self.sent += 1
            return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
