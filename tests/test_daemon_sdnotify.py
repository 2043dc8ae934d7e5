"""sd_notify over $NOTIFY_SOCKET: path and abstract sockets, watchdog period, no manager."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from hil_af.daemon.sdnotify import Notifier


def _recv(sock: socket.socket) -> str:
    sock.settimeout(2.0)
    return sock.recv(4096).decode()


def test_path_socket_gets_ready_status_watchdog(tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(path)
        n = Notifier(env={"NOTIFY_SOCKET": path})
        assert n.enabled
        assert n.ready("Idle mode=single")
        assert _recv(rx) == "READY=1\nSTATUS=Idle mode=single"
        assert n.status("Focused\nposition=500   x")  # STATUS is kept on one line
        assert _recv(rx) == "STATUS=Focused position=500 x"
        assert n.watchdog()
        assert _recv(rx) == "WATCHDOG=1"
        assert n.stopping()
        assert _recv(rx) == "STOPPING=1"
        assert n.sent == 4 and n.errors == 0
        n.close()


def test_abstract_namespace_socket():
    name = f"hil-af-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(b"\0" + name.encode())
        n = Notifier(env={"NOTIFY_SOCKET": "@" + name})
        assert n.notify("READY=1")
        assert _recv(rx) == "READY=1"


def test_no_manager_is_a_silent_no_op():
    n = Notifier(env={})
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False
    assert n.watchdog_interval_s is None


def test_vanished_manager_counts_an_error_and_does_not_raise(tmp_path):
    n = Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "nobody.sock")})
    assert n.watchdog() is False
    assert n.errors == 1


@pytest.mark.parametrize("env, expected", [
    ({"WATCHDOG_USEC": "2000000"}, 1.0),
    ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}, 1.0),
    ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "junk"}, None),
    ({}, None),
])
def test_watchdog_interval_is_half_the_period(env, expected):
    n = Notifier(env={"NOTIFY_SOCKET": "/nonexistent", **env})
    assert n.watchdog_interval_s == expected
