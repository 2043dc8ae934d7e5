"""``hil-af serve``: the Unix socket server, the control loop thread, signals, sd_notify.

Threads:
- main: opens the rig (``AFService.open``), binds the socket, sends READY=1,
  then waits for signals: SIGTERM/SIGINT stop cleanly, SIGHUP reloads the
  rig profile and calibration (RELOADING=1 ... READY=1).
- the socket server (``socketserver`` accept loop, listen backlog
  ``LISTEN_BACKLOG``) and one thread per client, at most ``max_clients``:
  each reads JSON lines (at most ``MAX_LINE_BYTES`` each) and writes one
  reply line per request, in order; a bad line gets ``"ok": false`` and the
  connection stays usable.  A client that sends nothing, or does not read
  its replies, for ``idle_timeout_s`` seconds gets one ``"ok": false``
  line (when it can still take one) and is disconnected, freeing its slot.
- the control loop: continuous-AF steps when the mode is ``continuous``,
  STATUS= when the AF state changes, and WATCHDOG=1 every half
  ``$WATCHDOG_USEC`` -- withheld while a rig operation has been running for
  more than ``hang_s`` seconds, so systemd restarts a daemon hung in a driver.

Stop: the socket is unlinked first (no new clients), client connections are
shut down, the loop joins, then the lens is parked and the rig closed; the
exit code is 0, or 1 when parking or closing the devices failed.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import socketserver
import stat
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import BadInput
from .protocol import MAX_LINE_BYTES, ProtocolError, encode_reply, error_reply, parse_request
from .sdnotify import Notifier
from .service import AFService

log = logging.getLogger("hil_af.daemon")

SOCKET_MODE = 0o660
LISTEN_BACKLOG = 128  # pending connects queued by the kernel (bursts of clients; capped by net.core.somaxconn)
IDLE_TIMEOUT_S = 60.0  # a client that sends nothing (or reads no reply) for this long is disconnected


class _Handler(socketserver.StreamRequestHandler):
    """One client connection: request lines in, reply lines out."""

    server: "_Server"

    def handle(self) -> None:
        d = self.server.owner
        if not d.add_client(self.connection):
            self._send(error_reply(f"too many clients (limit {d.max_clients}); try again later"))
            return
        try:
            # reads and writes time out: a client idle (or not reading) for idle_timeout_s loses its slot
            self.connection.settimeout(d.idle_timeout_s)
            while not d.stopping:
                try:
                    line = self.rfile.readline(MAX_LINE_BYTES + 1)
                except TimeoutError:
                    log.info("closing a client idle for %g s", d.idle_timeout_s)
                    self._send(error_reply(f"idle for {d.idle_timeout_s:g} s: connection closed"))
                    return
                if not line:
                    return
                if len(line) > MAX_LINE_BYTES:
                    rest = self._discard_line() if not line.endswith(b"\n") else 0
                    d.service.count("requests", "errors")
                    reply = error_reply(f"request line too long: more than {MAX_LINE_BYTES} bytes "
                                        f"({len(line) + rest} read); limit {MAX_LINE_BYTES}")
                else:
                    reply = d.handle_line(line)
                if not self._send(reply):
                    return
        except (ConnectionError, OSError):
            return  # the client went away, or we shut the connection down to stop
        finally:
            d.remove_client(self.connection)

    def _discard_line(self) -> int:
        n = 0
        while True:
            chunk = self.rfile.readline(MAX_LINE_BYTES)
            n += len(chunk)
            if not chunk or chunk.endswith(b"\n"):
                return n

    def _send(self, reply: dict[str, Any]) -> bool:
        try:
            self.wfile.write(encode_reply(reply))
            return True
        except (ConnectionError, OSError):
            return False


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, path: str, owner: "Daemon"):
        self.owner = owner
        super().__init__(path, _Handler)

    def server_bind(self) -> None:
        old = os.umask(0o117)  # the socket file is created 0660, with no window of wider access
        try:
            super().server_bind()
        finally:
            os.umask(old)
        os.chmod(self.owner.socket_path, SOCKET_MODE)

    def handle_error(self, request, client_address) -> None:  # never print tracebacks to stderr raw
        log.exception("client handler failed")


def prepare_socket_path(path: str) -> None:
    """Refuse a path that is not ours; remove a stale socket nobody listens on."""
    p = Path(path)
    if len(os.fsencode(path)) > 107:
        raise BadInput(f"socket path too long for a Unix socket ({len(os.fsencode(path))} bytes > 107): {path}")
    if not p.parent.is_dir():
        raise BadInput(f"socket directory does not exist: {p.parent}")
    if not os.path.lexists(path):
        return
    st = os.lstat(path)
    if not stat.S_ISSOCK(st.st_mode):
        raise BadInput(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # stale: left by a daemon that was killed
        log.info("removed stale socket %s", path)
        return
    finally:
        probe.close()
    raise BadInput(f"another daemon is already serving on {path}")


class Daemon:
    """See the module docstring.  ``run()`` blocks until stopped and returns the exit code."""

    def __init__(self, service: AFService, socket_path: str, notifier: Notifier | None = None,
                 tick_s: float = 0.05, idle_tick_s: float = 0.25, hang_s: float = 60.0, max_clients: int = 32,
                 idle_timeout_s: float = IDLE_TIMEOUT_S):
        self.service = service
        self.socket_path = str(socket_path)
        self.notifier = notifier or Notifier()
        self.tick_s = tick_s
        self.idle_tick_s = idle_tick_s
        self.hang_s = hang_s
        self.max_clients = max_clients
        self.idle_timeout_s = float(idle_timeout_s)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._hup = False
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()
        self._server: _Server | None = None
        self._socket_ino: int | None = None
        self._loop_thread: threading.Thread | None = None
        self.watchdog_pings = 0
        self.withheld = False

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- clients ----------------------------------------------------------
    def add_client(self, conn: socket.socket) -> bool:
        with self._clients_lock:
            if len(self._clients) >= self.max_clients:
                return False
            self._clients.add(conn)
            return True

    def remove_client(self, conn: socket.socket) -> None:
        with self._clients_lock:
            self._clients.discard(conn)

    def handle_line(self, line: bytes) -> dict[str, Any]:
        try:
            req = parse_request(line)
        except ProtocolError as e:
            self.service.count("requests", "errors")
            return error_reply(str(e), e.request_id)
        reply = self.service.handle(req)
        if req.cmd == "mode":
            self._wake.set()  # let the loop start/stop continuous AF now
        return reply

    # -- signals ----------------------------------------------------------
    def request_stop(self, *_: Any) -> None:
        self._stop.set()
        self._wake.set()

    def request_reload(self, *_: Any) -> None:
        self._hup = True
        self._wake.set()

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)

    # -- main -------------------------------------------------------------
    def run(self) -> int:
        if threading.current_thread() is threading.main_thread():
            self.install_signals()
        self.service.open()
        if self.stopping:  # SIGTERM while the rig was opening
            self.service.close()
            return 0
        try:
            self._start_server()
        except BaseException:
            self.service.close()
            raise
        self._loop_thread = threading.Thread(target=self._loop, name="af-loop", daemon=True)
        self._loop_thread.start()
        log.info("serving %s on %s", self.service.config.rig, self.socket_path)
        self.notifier.ready(self.service.status_line())
        while not self._stop.wait(0.2):
            if self._hup:
                self._hup = False
                self._reload()
        return self._shutdown()

    def _start_server(self) -> None:
        prepare_socket_path(self.socket_path)
        self._server = _Server(self.socket_path, self)
        self._socket_ino = os.lstat(self.socket_path).st_ino
        t = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                             name="socket-server", daemon=True)
        t.start()

    def _reload(self) -> None:
        log.info("SIGHUP: reloading the rig profile and calibration")
        self.notifier.reloading()
        try:
            self.service.reload()
            log.info("reloaded")
            self.notifier.ready(self.service.status_line())
        except Exception as e:
            log.error("reload failed, keeping the previous setup: %s", e)
            self.notifier.ready(f"reload failed: {e}; {self.service.status_line()}")

    def _shutdown(self) -> int:
        log.info("stopping")
        self.notifier.stopping("stopping: parking the lens")
        self._remove_socket()
        with self._clients_lock:
            for c in list(self._clients):
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if self._loop_thread is not None:
            self._loop_thread.join(timeout=self.service.config.lock_timeout_s)
        pos = self.service.close()
        log.info("stopped; lens at %s", "unknown" if pos is None else f"{pos:g}")
        self.notifier.close()
        return 1 if self.service.close_error else 0

    def _remove_socket(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        try:
            if self._socket_ino is not None and os.lstat(self.socket_path).st_ino == self._socket_ino:
                os.unlink(self.socket_path)
        except FileNotFoundError:
            pass

    # -- control loop -----------------------------------------------------
    def _loop(self) -> None:
        interval = self.notifier.watchdog_interval_s
        next_ping = 0.0
        last_status = None
        failures = 0
        while not self._stop.is_set():
            try:
                self.service.continuous_tick()
                failures = 0
            except Exception:
                failures += 1
                log.exception("control loop step failed (%d in a row)", failures)
            now = time.monotonic()
            if interval is not None and now >= next_ping:
                busy = self.service.busy_for()
                if busy < self.hang_s:
                    self.notifier.watchdog()
                    self.watchdog_pings += 1
                    self.withheld = False
                    next_ping = now + interval
                else:
                    if not self.withheld:
                        log.error("rig operation hung for %.1f s: withholding watchdog pings", busy)
                    self.withheld = True
                    next_ping = now + interval
            st = self.service.status_line()
            if st != last_status:
                self.notifier.status(st)
                last_status = st
            wait = self.tick_s if self.service.mode == "continuous" else self.idle_tick_s
            if failures:
                wait = min(5.0, self.idle_tick_s * 2 ** min(failures, 5))
            if interval is not None:
                wait = max(0.0, min(wait, next_ping - time.monotonic()))
            self._wake.wait(wait)
            self._wake.clear()
