"""A kernel VCM driver's focus control on its V4L2 sub-device: ``v4l2://``.

URL grammar::

    v4l2:///dev/v4l-subdevN[?settle_ms=T][&tries=K][&cid=0xHEX]

    /dev/v4l-subdevN  the lens sub-device (find it with
                      ``v4l2-ctl -d /dev/v4l-subdevN --list-ctrls``: the one
                      that has focus_absolute; with dtoverlay=imx708 the
                      DW9817 (kernel driver dw9807) is usually /dev/v4l-subdev1)
    settle_ms         mechanical settle after a move (default 15 ms)
    tries             attempts per ioctl on EBUSY/EIO/EAGAIN (default 3)
    cid               control id (default V4L2_CID_FOCUS_ABSOLUTE 0x009a090a)

Positions are the control's values: the VCM DAC code for the DW9807/DW9817,
DW9714, AK7375 and AD5398 kernel drivers (native units); ``range`` comes from
``VIDIOC_QUERYCTRL``.  Moves are ``VIDIOC_S_CTRL``; ``read_position`` is
``VIDIOC_G_CTRL``.  The kernel driver owns power: closing the node lets its
runtime-PM suspend ramp the lens down and power the chip off, so ``close``
only closes the file descriptor.  Do not use this while libcamera runs the
same camera (it writes the lens itself): use ``libcamera-lens://`` then.
"""

from __future__ import annotations

import errno
import math

from ..clock import Clock, SystemClock
from ..errors import BadInput, DeviceError
from .base import ContextMixin, checked_position
from .registry import DriverURL, register
from .v4l2_ioctl import (
    V4L2_CID_FOCUS_ABSOLUTE,
    V4L2_CTRL_FLAG_DISABLED,
    V4L2_CTRL_FLAG_READ_ONLY,
    FcntlDevice,
    IoctlDevice,
    g_ctrl,
    queryctrl,
    s_ctrl,
)

_TRANSIENT = {errno.EBUSY, errno.EAGAIN, errno.EIO, errno.EINTR}


def _int0(s: str) -> int:
    """An integer in decimal or 0x hex."""
    return int(s, 0)


_int0.__name__ = "integer (decimal or 0x hex)"


class V4L2Lens(ContextMixin):
    """Focus through a V4L2 control; positions in the control's units (DAC codes)."""

    def __init__(self, dev: IoctlDevice, *, path: str = "v4l2", cid: int = V4L2_CID_FOCUS_ABSOLUTE,
                 settle_s: float = 0.015, tries: int = 3, clock: Clock | None = None):
        self.dev = dev
        self.path = path
        self.cid = cid
        self._settle_s = float(settle_s)
        self.tries = max(1, int(tries))
        self.clock = clock or SystemClock()
        self._closed = False
        try:
            try:
                q = queryctrl(dev, cid)
            except OSError as e:
                if e.errno == errno.EINVAL:
                    raise DeviceError(
                        f"{path}: has no control 0x{cid:08x} (focus_absolute): this is not the lens "
                        f"sub-device; try the other /dev/v4l-subdev* nodes (v4l2-ctl --list-ctrls)") from None
                raise DeviceError(f"{path}: VIDIOC_QUERYCTRL failed: {e}") from None
            if q.flags & V4L2_CTRL_FLAG_DISABLED:
                raise DeviceError(f"{path}: control {q.name!r} is disabled")
            if q.flags & V4L2_CTRL_FLAG_READ_ONLY:
                raise DeviceError(f"{path}: control {q.name!r} is read-only")
            self.query = q
            self._pos = float(self._io("VIDIOC_G_CTRL", lambda: g_ctrl(dev, cid)))
        except Exception:
            dev.close()
            raise

    @property
    def position(self) -> float:
        """Last commanded (driver-reported) position, control units."""
        return self._pos

    @property
    def range(self) -> tuple[float, float]:
        """(minimum, maximum) of the control from VIDIOC_QUERYCTRL."""
        return (float(self.query.minimum), float(self.query.maximum))

    @property
    def settle_time_s(self) -> float:
        return self._settle_s

    def move_to(self, position: float) -> None:
        """Set the control to ``position`` (rounded to the control's step); out of range raises BadInput."""
        if self._closed:
            raise DeviceError(f"{self.path}: lens is closed")
        p = checked_position(position, *self.range, str(self.path), "control range")
        step = max(1, self.query.step)
        value = self.query.minimum + int(round((p - self.query.minimum) / step)) * step
        value = min(value, self.query.maximum)
        got = self._io("VIDIOC_S_CTRL", lambda: s_ctrl(self.dev, self.cid, value))
        self._pos = float(got)

    def read_position(self) -> float:
        """The control's current value (VIDIOC_G_CTRL)."""
        return float(self._io("VIDIOC_G_CTRL", lambda: g_ctrl(self.dev, self.cid)))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.dev.close()

    def _io(self, name: str, op):
        delay = 0.001
        for attempt in range(1, self.tries + 1):
            try:
                return op()
            except OSError as e:
                if e.errno not in _TRANSIENT or attempt == self.tries:
                    raise DeviceError(f"{self.path}: {name} failed after {attempt} tries: {e}") from None
                self.clock.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover


@register("v4l2", "lens", "focus_absolute on a V4L2 lens sub-device: v4l2:///dev/v4l-subdevN (control units, DAC codes)")
def open_v4l2(url: DriverURL, ctx: dict) -> V4L2Lens:
    url.unknown_keys({"settle_ms", "tries", "cid"})
    path = (url.netloc + url.path) if url.netloc else url.path
    if not path.startswith("/dev/"):
        raise BadInput(f"{url.raw}: expected v4l2:///dev/v4l-subdevN (three slashes), got path {path!r}")
    settle_ms = url.get("settle_ms", 15.0, float)
    if not (math.isfinite(settle_ms) and settle_ms >= 0):
        raise BadInput(f"{url.raw}: settle_ms must be >= 0, got {settle_ms}")
    cid = url.get("cid", V4L2_CID_FOCUS_ABSOLUTE, _int0)
    tries = url.get("tries", 3, int)
    try:
        dev = FcntlDevice(path)
    except FileNotFoundError:
        raise DeviceError(f"{path} does not exist: is the VCM overlay loaded? (drivers/devicetree.md)") from None
    except PermissionError:
        raise DeviceError(f"no permission to open {path}: add yourself to group 'video' "
                          f"or install drivers/udev/60-hil-af.rules") from None
    return V4L2Lens(dev, path=path, cid=cid, settle_s=settle_ms / 1e3, tries=tries, clock=ctx.get("clock"))
