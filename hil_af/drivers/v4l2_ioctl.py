"""V4L2 control ioctls: request numbers, struct layouts, one ioctl boundary.

Everything the ``v4l2://`` driver needs from <linux/videodev2.h>, in one
place.  Request numbers are computed with the kernel's generic ``_IOWR``
encoding (asm-generic/ioctl.h, used by arm, arm64 and x86): nr bits 0..7,
type bits 8..15, size bits 16..29, direction bits 30..31 (read|write = 3)::

    VIDIOC_G_CTRL    = _IOWR('V', 27, struct v4l2_control)    = 0xc008561b
    VIDIOC_S_CTRL    = _IOWR('V', 28, struct v4l2_control)    = 0xc008561c
    VIDIOC_QUERYCTRL = _IOWR('V', 36, struct v4l2_queryctrl)  = 0xc0445624

Struct layouts (no padding: every field is 4-byte aligned)::

    struct v4l2_control   { __u32 id; __s32 value; }                       8 bytes
    struct v4l2_queryctrl { __u32 id; __u32 type; __u8 name[32];
                            __s32 minimum, maximum, step, default_value;
                            __u32 flags; __u32 reserved[2]; }               68 bytes

Drivers call ``IoctlDevice.ioctl(request, buf)`` (the kernel edits ``buf``
in place); ``FcntlDevice`` is the real one over ``fcntl.ioctl``, tests use
``hil_af.drivers.fakes.FakeV4L2Subdev``.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

_IOC_NRSHIFT, _IOC_TYPESHIFT, _IOC_SIZESHIFT, _IOC_DIRSHIFT = 0, 8, 16, 30
_IOC_WRITE, _IOC_READ = 1, 2


def _IOC(direction: int, typ: int, nr: int, size: int) -> int:
    if not (0 <= nr < 256 and 0 <= typ < 256 and 0 <= size < (1 << 14)):
        raise ValueError(f"ioctl field out of range: type={typ} nr={nr} size={size}")
    return (direction << _IOC_DIRSHIFT) | (typ << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT)


def _IOWR(typ: str, nr: int, size: int) -> int:
    return _IOC(_IOC_READ | _IOC_WRITE, ord(typ), nr, size)


V4L2_CONTROL = struct.Struct("=Ii")
V4L2_QUERYCTRL = struct.Struct("=II32siiiiI2I")

VIDIOC_G_CTRL = _IOWR("V", 27, V4L2_CONTROL.size)
VIDIOC_S_CTRL = _IOWR("V", 28, V4L2_CONTROL.size)
VIDIOC_QUERYCTRL = _IOWR("V", 36, V4L2_QUERYCTRL.size)

V4L2_CID_CAMERA_CLASS_BASE = 0x009A0900
V4L2_CID_FOCUS_ABSOLUTE = V4L2_CID_CAMERA_CLASS_BASE + 10
V4L2_CID_FOCUS_RELATIVE = V4L2_CID_CAMERA_CLASS_BASE + 11

V4L2_CTRL_TYPE_INTEGER = 1
V4L2_CTRL_FLAG_DISABLED = 0x0001
V4L2_CTRL_FLAG_GRABBED = 0x0002
V4L2_CTRL_FLAG_READ_ONLY = 0x0004
V4L2_CTRL_FLAG_INACTIVE = 0x0010


@dataclass(frozen=True)
class QueryCtrl:
    """The fields of ``struct v4l2_queryctrl`` that matter here."""

    id: int
    type: int
    name: str
    minimum: int
    maximum: int
    step: int
    default: int
    flags: int

    @classmethod
    def unpack(cls, buf: bytes | bytearray) -> "QueryCtrl":
        cid, typ, name, mn, mx, step, dflt, flags, _r0, _r1 = V4L2_QUERYCTRL.unpack(bytes(buf))
        return cls(cid, typ, name.split(b"\0", 1)[0].decode("ascii", "replace"), mn, mx, step, dflt, flags)

    def pack(self) -> bytes:
        return V4L2_QUERYCTRL.pack(self.id, self.type, self.name.encode()[:31], self.minimum, self.maximum,
                                   self.step, self.default, self.flags, 0, 0)


@runtime_checkable
class IoctlDevice(Protocol):
    """An open device node: ``ioctl`` edits ``buf`` in place, raises OSError like the kernel."""

    def ioctl(self, request: int, buf: bytearray) -> None: ...

    def close(self) -> None: ...


class FcntlDevice:
    """A device node opened read-write, ioctls through ``fcntl.ioctl``."""

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def ioctl(self, request: int, buf: bytearray) -> None:
        import fcntl

        fcntl.ioctl(self.fd, request, buf, True)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def queryctrl(dev: IoctlDevice, cid: int) -> QueryCtrl:
    buf = bytearray(V4L2_QUERYCTRL.size)
    V4L2_QUERYCTRL.pack_into(buf, 0, cid, 0, b"", 0, 0, 0, 0, 0, 0, 0)
    dev.ioctl(VIDIOC_QUERYCTRL, buf)
    return QueryCtrl.unpack(buf)


def g_ctrl(dev: IoctlDevice, cid: int) -> int:
    buf = bytearray(V4L2_CONTROL.pack(cid, 0))
    dev.ioctl(VIDIOC_G_CTRL, buf)
    return V4L2_CONTROL.unpack(buf)[1]


def s_ctrl(dev: IoctlDevice, cid: int, value: int) -> int:
    """Set a control; returns the value the driver reports back (it may clamp or round)."""
    buf = bytearray(V4L2_CONTROL.pack(cid, int(value)))
    dev.ioctl(VIDIOC_S_CTRL, buf)
    return V4L2_CONTROL.unpack(buf)[1]
