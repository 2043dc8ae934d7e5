"""The AF service behind the socket: one rig, one controller, one lock.

Every request that touches the rig runs under ``lock`` (requests are
serialised; the control loop's continuous steps too).  ``handle`` turns a
parsed ``Request`` into a reply dict and never raises: bad input, device
errors and bugs all become ``"ok": false`` replies, and the service goes on.

``busy_for()`` says how long the current rig operation has been running
(seconds, 0 when idle): the control loop stops its watchdog pings when one
hangs, so systemd restarts a daemon stuck in a driver call.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from ..errors import BadInput, DeviceError, HilAfError
from .protocol import Request, error_reply, ok_reply

log = logging.getLogger("hil_af.daemon")


@dataclass
class ServiceConfig:
    """What ``hil-af serve`` was asked to run.

    park: lens position (native units) to move to before closing on stop;
    None: the lens driver's own ``close()`` parks it (VCM power-down).
    lock_timeout_s: how long a request waits for the rig before "busy".
    """

    rig: str
    lens: str | None = None
    method: str = "pe2"
    mode: str = "single"
    calibration: str | None = None
    global_calibration: str | None = None
    model_dir: str | None = None
    flatfield: str | None = None
    park: float | None = None
    lock_timeout_s: float = 60.0


class RigBusy(HilAfError):
    """The rig stayed locked by another request for longer than the timeout."""


class AFService:
    """Owns the open rig and its controller; see the module docstring."""

    def __init__(self, config: ServiceConfig, clock=None):
        self.config = config
        self.clock = clock
        self.lock = threading.Lock()
        self.rig: Any = None  # hil_af.drivers.base.Rig once open
        self.controller: Any = None  # hil_af.controller.core.Controller (or a test double)
        self._busy_since: float | None = None
        self._busy_what = ""
        self.counts: dict[str, int] = {"requests": 0, "errors": 0, "focus": 0, "focused": 0, "failed": 0,
                                       "device_errors": 0, "reloads": 0}
        self._counts_lock = threading.Lock()
        self.close_error: str | None = None
        self.last_status: dict[str, Any] = {}
        self.started = time.monotonic()
        self._handlers = {"focus": self._cmd_focus, "status": self._cmd_status, "mode": self._cmd_mode,
                          "move": self._cmd_move}

    # -- life cycle -------------------------------------------------------
    def open(self) -> None:
        """Open the rig, build the controller, load its model: READY may follow.

        A service given an open ``rig`` and ``controller`` beforehand keeps them.
        """
        from ..drivers.registry import open_rig

        if self.rig is not None and self.controller is not None:
            self._refresh_status()
            return

        rig = open_rig(self.config.rig, lens=self.config.lens, clock=self.clock)
        try:
            ctl = self._make_controller(rig)
        except BaseException:
            rig.close()
            raise
        self.rig, self.controller = rig, ctl
        self._refresh_status()

    def _make_controller(self, rig):
        from ..controller.core import Controller

        c = self.config
        if c.park is not None:  # checked at start (exit 2), not first met when stopping
            lo, hi = rig.lens.range
            if not lo <= c.park <= hi:
                raise BadInput(f"--park {c.park:g} is outside the lens range [{lo:g}, {hi:g}] (native units)")
        ctl = Controller(rig, method=c.method, calibration=c.calibration, model_dir=c.model_dir,
                         flatfield=c.flatfield, global_calibration=c.global_calibration)
        ctl.set_mode(c.mode)
        self._preload(ctl, c.method)
        return ctl

    @staticmethod
    def _preload(ctl, method: str) -> None:
        """Load the method's model/calibration now, so a missing file fails at start, not on a request."""
        if method in ("pe", "pe2", "hybrid"):
            ctl.estimators.pe(1)
            if method != "pe":
                ctl.estimators.pe(2)
        if method in ("pdaf", "pdaf-global") or (method == "hybrid" and ctl.calibration):
            ctl.estimators.pdaf(method == "pdaf-global")

    def reload(self) -> None:
        """SIGHUP: re-read the rig profile and the calibration; keep the old setup if that fails.

        The devices stay open when the profile still names the same source and
        lens; otherwise the rig is reopened.  The AF mode and last result carry over.
        """
        from ..profiles import is_profile_spec, load_profile

        with self.busy("reload"):
            old_rig, old_ctl = self.rig, self.controller
            assert old_rig is not None and old_ctl is not None
            new_rig = old_rig
            if is_profile_spec(self.config.rig):
                prof = load_profile(self.config.rig)
                same = prof["rig"]["source"] == old_rig.profile.get("rig", {}).get("source") and \
                    prof["rig"].get("lens") == old_rig.profile.get("rig", {}).get("lens")
                if same:
                    old_rig.profile = {**old_rig.profile, **prof}
                    if "lens_map" in prof:
                        from ..optics import LensMap

                        old_rig.lens_map = LensMap(tuple(prof["lens_map"]["dioptres"]), tuple(prof["lens_map"]["codes"]))
                else:
                    from ..drivers.registry import open_rig

                    new_rig = open_rig(self.config.rig, lens=self.config.lens, clock=self.clock)
            try:
                ctl = self._make_controller(new_rig)
            except BaseException:
                if new_rig is not old_rig:
                    new_rig.close()
                raise
            ctl.set_mode(old_ctl.mode)
            ctl.last, ctl.state = old_ctl.last, old_ctl.state
            if new_rig is not old_rig:
                self._park_and_close(old_rig)
            self.rig, self.controller = new_rig, ctl
            self.count("reloads")
            self._refresh_status()

    def close(self) -> float | None:
        """Park the lens and close the rig; returns the lens position last read (native units)."""
        got = self.lock.acquire(timeout=self.config.lock_timeout_s)
        try:
            rig, self.rig = self.rig, None
            return self._park_and_close(rig) if rig is not None else None
        finally:
            if got:
                self.lock.release()

    def _park_and_close(self, rig) -> float | None:
        """Park (``config.park``) and close ``rig``; failures are logged and kept in ``close_error``."""
        pos = None
        try:
            if self.config.park is not None:
                rig.lens.move_to(float(self.config.park))
                rig.clock.sleep(float(rig.lens.settle_time_s))
            pos = float(rig.lens.position)
        except Exception as e:  # still close the devices
            self.close_error = f"parking the lens failed: {e}"
            log.error("%s", self.close_error)
        try:
            rig.close()
        except Exception as e:
            self.close_error = f"closing the rig failed (the lens may not be parked): {e}"
            log.error("%s", self.close_error)
        return pos

    def count(self, *keys: str) -> None:
        """Add one to each counter in ``keys`` (thread-safe)."""
        with self._counts_lock:
            for k in keys:
                self.counts[k] = self.counts.get(k, 0) + 1

    # -- locking and watchdog support --------------------------------------
    @contextmanager
    def busy(self, what: str, timeout: float | None = None) -> Iterator[None]:
        """Hold the rig lock for one operation (RigBusy after ``timeout`` seconds of waiting)."""
        t = self.config.lock_timeout_s if timeout is None else timeout
        if not self.lock.acquire(timeout=t):
            raise RigBusy(f"rig busy ({self._busy_what or 'another request'}) for more than {t:g} s")
        self._busy_since, self._busy_what = time.monotonic(), what
        try:
            yield
        except DeviceError:
            self.count("device_errors")
            self._recover_lens()
            raise
        finally:
            self._busy_since, self._busy_what = None, ""
            self.lock.release()

    def busy_for(self) -> float:
        since = self._busy_since
        return 0.0 if since is None else time.monotonic() - since

    @property
    def mode(self) -> str:
        return self.controller.mode if self.controller is not None else "manual"

    def _refresh_status(self) -> None:
        ctl = self.controller
        if ctl is not None and self.rig is not None:
            self.last_status = ctl.status()

    def status_line(self) -> str:
        """One line for systemd's STATUS=: the AF state, mode, lens position, last failure."""
        s = self.last_status
        if not s:
            return "starting"
        pos = s.get("position")
        line = f"{s.get('state')} mode={s.get('mode')} method={s.get('method')}"
        if isinstance(pos, (int, float)):
            line += f" position={pos:.1f}"
        last = s.get("last") or {}
        if last.get("state") == "Failed" and last.get("reason"):
            line += f" last_failure={last['reason']}"
        return line

    # -- requests ---------------------------------------------------------
    def handle(self, req: Request) -> dict[str, Any]:
        """One request -> one reply dict; never raises."""
        self.count("requests")
        try:
            reply = self._handlers[req.cmd](req)
        except BadInput as e:
            reply = error_reply(str(e), req.id)
        except RigBusy as e:
            reply = error_reply(str(e), req.id, busy=True)
        except DeviceError as e:
            log.error("%s: device error: %s", req.cmd, e)
            reply = error_reply(f"device error: {e}", req.id)
        except Exception as e:  # a bug: say so, keep serving
            log.exception("%s: internal error", req.cmd)
            reply = error_reply(f"internal error: {type(e).__name__}: {e}", req.id)
        if not reply.get("ok"):
            self.count("errors")
        return reply

    def _cmd_status(self, req: Request) -> dict[str, Any]:
        try:
            with self.busy("status", timeout=0.5):
                self._refresh_status()
            busy = False
        except RigBusy:  # answer from the last known status rather than wait behind a focus cycle
            busy = True
        with self._counts_lock:
            counts = dict(self.counts)
        return ok_reply(req, **self.last_status, busy=busy, counts=counts,
                        uptime_s=round(time.monotonic() - self.started, 3))

    def _cmd_mode(self, req: Request) -> dict[str, Any]:
        with self.busy("mode"):
            self.controller.set_mode(req.mode)
            self._refresh_status()
        return ok_reply(req, mode=self.controller.mode, state=self.last_status.get("state"))

    def _cmd_move(self, req: Request) -> dict[str, Any]:
        with self.busy("move"):
            ctl = self.controller
            if ctl.mode == "continuous":  # continuous AF would move it straight back (Picamera2: LensPosition needs Manual)
                raise BadInput('move needs mode manual or single, not continuous: send {"cmd": "mode", "mode": "manual"} first')
            target = ctl.move(req.position)
            self.rig.clock.sleep(float(self.rig.lens.settle_time_s))
            self._refresh_status()
        return ok_reply(req, position=self.last_status.get("position"), target=target,
                        state=self.last_status.get("state"))

    def _cmd_focus(self, req: Request) -> dict[str, Any]:
        with self.busy("focus"):
            return self._focus_locked(req.roi, req.method, req)

    def _focus_locked(self, roi, method, req: Request | None = None) -> dict[str, Any]:
        rois = None if roi is None else np.asarray([roi], dtype=np.int64)
        opts = {} if req is None else {"timeout_s": req.timeout, "af_range": req.range, "start": req.start}
        opts = {k: v for k, v in opts.items() if v is not None}  # only what the request set
        res = self.controller.focus(rois=rois, method=method, **opts)
        self._count_result(res)
        self._refresh_status()
        body = res.to_json()
        if body.get("state") == "Failed":
            return error_reply(f"focus failed: {body.get('reason')}", req.id if req else None, **body)
        return ok_reply(req, **body)

    def _count_result(self, res) -> None:
        self.count("focus", "focused" if res.state.value == "Focused" else "failed")
        if res.state.value == "Failed":
            log.warning("focus failed: %s", res.reason)

    def continuous_tick(self) -> bool:
        """One continuous-AF iteration if the mode asks for it and the rig is free; True if it ran."""
        if self.controller is None or self.controller.mode != "continuous":
            return False
        if not self.lock.acquire(blocking=False):
            return False
        self._busy_since, self._busy_what = time.monotonic(), "continuous"
        try:
            res = self.controller.continuous_step()
            if res is not None:
                self._count_result(res)
            self._refresh_status()
        except DeviceError as e:
            self.count("device_errors")
            log.error("continuous AF: device error: %s", e)
            self._recover_lens()
        finally:
            self._busy_since, self._busy_what = None, ""
            self.lock.release()
        return True

    def _recover_lens(self) -> None:
        """After a device error (lock held), wait for the lens to settle and re-read where it is."""
        rig = self.rig
        if rig is None:
            return
        try:
            rig.clock.sleep(float(rig.lens.settle_time_s))
            self.last_status = {**self.last_status, "position": float(rig.lens.position)}
        except Exception as e:
            log.error("lens position unreadable after a device error: %s", e)
