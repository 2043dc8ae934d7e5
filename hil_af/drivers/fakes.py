"""Fakes at the library / bus boundary, for tests and for trying drivers without hardware.

- ``Dw98xxModel``, ``Ak7375Model``, ``Dw9714Model``: register-level models of
  the VCM chips (what a chip does with the bytes it receives), written from
  raspberrypi/linux ``drivers/media/i2c/dw9807-vcm.c``, ``ak7375.c`` and
  ``ad5398_vcm.c`` (the DW9714 model also stands for the AD5398).  They invent
  nothing those drivers do not show: reads return only the DW98xx STATUS
  register (no kernel driver reads a position back: other reads fail with EIO
  unless a test sets ``readable=True``), and ``power_off()``/``power_on()``
  model the shared sensor regulator: unpowered, the chip NACKs every
  transfer; powered again, it has lost its registers and drives nothing
  until it is powered up again (the kernel re-runs ``dw9807_active`` /
  ``ak7375_active`` / ``ad5398_power_on`` on every regulator enable), with
  the lens resting at the idle position.  And
  ``FakeI2CBus`` (the ``I2CBus`` protocol) that routes transfers to them and
  logs every one; ``FakeSMBus`` stands in for ``smbus2.SMBus`` (it takes real
  ``i2c_msg`` objects), ``MicroPythonI2C`` for ``machine.I2C`` in the
  serial-bridge firmware.
- ``FakeV4L2Subdev``: an ``IoctlDevice`` with one integer control, decoding the
  ioctl structs with its own copies of the kernel layouts.
- ``fake_picamera2_module`` (in ``fake_picamera2``, re-exported here): a
  module object with a ``Picamera2`` class (configure, start,
  capture_request(wait=False) + wait(job, timeout), set_controls,
  capture_metadata), its requests (make_array("raw"), make_buffer,
  get_metadata, release) and ``MappedArray``, over camera buffers that a
  released request gives back to the camera.
- ``FakeSerialPort``: a pyserial-like port that hands each written line to a
  responder (e.g. the firmware's ``Bridge.handle_line``), with fault injection.

Fault injection everywhere is explicit (counters the test sets), never random.
"""

from __future__ import annotations

import errno
import os
import struct
from collections import deque
from typing import Any, Callable

from .fake_picamera2 import fake_picamera2_module

__all__ = ["Ak7375Model", "ChipModel", "Dw98xxModel", "Dw9714Model", "FakeI2CBus", "FakeSMBus", "FakeSerialPort",
           "FakeV4L2Subdev", "MicroPythonI2C", "chip_model", "fake_picamera2_module"]


# --------------------------------------------------------------------------- I2C chips
class ChipModel:
    """Base: ``write(data)`` and ``read(n)`` as the chip sees them on the wire.

    ``vdd``: the supply (shared with the sensor); ``readable``: answer reads of
    registers other than STATUS (not shown by any kernel driver: off by default).
    """

    vdd = True
    readable = False
    idle_code = 0

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def read(self, n: int) -> bytes:
        raise NotImplementedError

    def power_off(self) -> None:
        """The sensor's regulator goes off: the chip NACKs until ``power_on``."""
        self.vdd = False

    def power_on(self) -> None:
        """The regulator comes back: registers lost, output off until powered up."""
        self.vdd = True
        self._reset()

    def _reset(self) -> None:
        raise NotImplementedError

    def _unreadable(self) -> bytes:
        raise OSError(errno.EIO, "fake: this register read is not modelled (no kernel driver reads it)")


class Dw98xxModel(ChipModel):
    """DW9807/DW9817: auto-incrementing registers; STATUS 0x05 reads busy ``busy_polls`` times after each move.

    ``powered``: CTL 0x02 was last written 0x00 (dw9807_active); a fresh or
    power-cycled chip is not.  ``idle_code``: where the lens rests unpowered
    (DW9817: 512, ``dw9817_cfg.idle_pos``).
    """

    def __init__(self, busy_polls: int = 0, idle_code: int = 0, readable: bool = False):
        self.busy_polls = busy_polls     # STATUS reads that return 1 after each position write
        self.idle_code = idle_code
        self.readable = readable
        self.violations: list[str] = []  # protocol misuse the chip would suffer
        self._reset()

    def _reset(self) -> None:
        self.regs = bytearray(256)
        self.ptr = 0
        self._busy = 0
        self.powered = False

    @property
    def code(self) -> int:
        return ((self.regs[0x03] & 0x03) << 8) | self.regs[0x04]

    @property
    def lens_code(self) -> int:
        """Where the lens is driven: the position register when powered, else the idle position."""
        return self.code if self.powered else self.idle_code

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.ptr = data[0]
        if len(data) > 1 and self.ptr == 0x02:
            self.powered = data[1] == 0x00
        if len(data) > 1 and self.ptr == 0x03:
            if self._busy:
                self.violations.append(f"position written while STATUS busy: {data.hex()}")
            if not self.powered:
                self.violations.append(f"position written while powered down: {data.hex()}")
            if len(data) != 3:
                self.violations.append(f"position split across transfers: {data.hex()}")
            self._busy = self.busy_polls
        for i, b in enumerate(data[1:]):
            self.regs[(self.ptr + i) & 0xFF] = b

    def read(self, n: int) -> bytes:
        if self.ptr == 0x05:
            busy = 1 if self._busy else 0
            self._busy = max(0, self._busy - 1)
            return bytes([busy] + [0] * (n - 1))
        if not self.readable:
            return self._unreadable()
        return bytes(self.regs[(self.ptr + i) & 0xFF] for i in range(n))


class Ak7375Model(ChipModel):
    """AK7375: position register 0x00 (code << 4, big-endian), mode register 0x02 (0x40 standby)."""

    def __init__(self, readable: bool = False):
        self.readable = readable
        self.violations: list[str] = []
        self._reset()

    def _reset(self) -> None:
        self.regs = bytearray(256)
        self.regs[0x02] = 0x40  # standby at reset
        self.ptr = 0

    @property
    def code(self) -> int:
        return ((self.regs[0x00] << 8) | self.regs[0x01]) >> 4

    @property
    def powered(self) -> bool:
        return self.regs[0x02] == 0x00

    def write(self, data: bytes) -> None:
        self.ptr = data[0]
        if self.ptr == 0x00 and len(data) > 1 and not self.powered:
            self.violations.append(f"position written in standby: {data.hex()}")
        for i, b in enumerate(data[1:]):
            self.regs[(self.ptr + i) & 0xFF] = b

    def read(self, n: int) -> bytes:
        if not self.readable:
            return self._unreadable()
        return bytes(self.regs[(self.ptr + i) & 0xFF] for i in range(n))


class Dw9714Model(ChipModel):
    """DW9714 (and AD5398): every write is one 16-bit word PD<<15 | code<<4 | S."""

    def __init__(self, readable: bool = False):
        self.readable = readable
        self.violations: list[str] = []
        self._reset()

    def _reset(self) -> None:
        self.word = 0x8000  # powered down at reset

    @property
    def code(self) -> int:
        return (self.word >> 4) & 0x3FF

    @property
    def slew(self) -> int:
        return self.word & 0xF

    @property
    def powered(self) -> bool:
        return not (self.word & 0x8000)

    def write(self, data: bytes) -> None:
        if len(data) != 2:
            self.violations.append(f"write of {len(data)} bytes (needs exactly 2): {data.hex()}")
            return
        self.word = (data[0] << 8) | data[1]

    def read(self, n: int) -> bytes:
        if not self.readable:
            return self._unreadable()
        return self.word.to_bytes(2, "big")[:n]


def chip_model(name: str, **kw: Any) -> ChipModel:
    if name == "dw9807":
        return Dw98xxModel(**kw)
    if name == "dw9817":
        return Dw98xxModel(**{"idle_code": 512, **kw})
    return {"ak7375": Ak7375Model, "dw9714": Dw9714Model, "ad5398": Dw9714Model}[name](**kw)


class FakeI2CBus:
    """``I2CBus`` over chip models: ``devices`` maps 7-bit address -> model.

    ``log`` holds ("w", addr, bytes) and ("wr", addr, bytes_written, bytes_read);
    ``fail_next`` transfers raise OSError(``fail_errno``) (EREMOTEIO = NACK);
    an address with no device NACKs.
    """

    def __init__(self, devices: dict[int, ChipModel] | None = None):
        self.devices = dict(devices or {})
        self.log: list[tuple] = []
        self.fail_next = 0
        self.fail_errno = errno.EREMOTEIO
        self.failures = 0
        self.closed = False

    def _dev(self, addr: int) -> ChipModel:
        if self.closed:
            raise OSError(errno.EBADF, "bus closed")
        if self.fail_next > 0:
            self.fail_next -= 1
            self.failures += 1
            raise OSError(self.fail_errno, os.strerror(self.fail_errno))  # as the kernel reports it
        dev = self.devices.get(addr)
        if dev is None or not dev.vdd:
            raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))  # no ACK (absent or unpowered)
        return dev

    def write(self, addr: int, data: bytes) -> None:
        dev = self._dev(addr)
        dev.write(bytes(data))
        self.log.append(("w", addr, bytes(data)))

    def write_read(self, addr: int, data: bytes, n: int) -> bytes:
        dev = self._dev(addr)
        dev.write(bytes(data))
        out = dev.read(n)
        self.log.append(("wr", addr, bytes(data), out))
        return out

    def writes(self, addr: int | None = None) -> list[bytes]:
        """The payloads of plain writes (status polls excluded), in order."""
        return [e[2] for e in self.log if e[0] == "w" and (addr is None or e[1] == addr)]

    def close(self) -> None:
        self.closed = True


class FakeSMBus:
    """Stands in for ``smbus2.SMBus``: ``FakeSMBus.buses[n]`` is the FakeI2CBus behind /dev/i2c-n.

    ``i2c_rdwr`` takes real ``smbus2.i2c_msg`` objects: a write then a read is
    a combined transfer (``write_read``), a lone write is ``write``.
    """

    buses: dict[int, FakeI2CBus] = {}

    def __init__(self, bus: int | None = None, force: bool = False):
        if bus not in self.buses:
            raise FileNotFoundError(errno.ENOENT, f"No such file or directory: '/dev/i2c-{bus}'")
        self.fake = self.buses[bus]
        self.open = True

    def i2c_rdwr(self, *msgs: Any) -> None:
        i = 0
        while i < len(msgs):
            m = msgs[i]
            if m.flags & 0x0001:
                raise OSError(errno.EOPNOTSUPP, "fake: a read must follow a write")
            data = bytes(list(m))
            if i + 1 < len(msgs) and msgs[i + 1].flags & 0x0001:
                r = msgs[i + 1]
                out = self.fake.write_read(m.addr, data, r.len)
                for j, b in enumerate(out):
                    r.buf[j] = bytes([b])
                i += 2
            else:
                self.fake.write(m.addr, data)
                i += 1

    def close(self) -> None:
        self.open = False
        self.fake.close()


class MicroPythonI2C:
    """``machine.I2C`` (writeto / readfrom_mem) over a FakeI2CBus, for the bridge firmware."""

    def __init__(self, bus: FakeI2CBus):
        self.bus = bus

    def writeto(self, addr: int, buf: bytes, stop: bool = True) -> int:
        self.bus.write(addr, bytes(buf))
        return len(buf)

    def readfrom_mem(self, addr: int, memaddr: int, nbytes: int) -> bytes:
        return self.bus.write_read(addr, bytes([memaddr]), nbytes)


# --------------------------------------------------------------------------- V4L2
class FakeV4L2Subdev:
    """A lens sub-device with one integer control (the kernel's view of the ioctls).

    Decodes requests with its own layouts: v4l2_control '=Ii' (8 bytes),
    v4l2_queryctrl '=II32siiiiI2I' (68 bytes), request numbers as the kernel
    headers give them.  Unknown control ids -> EINVAL, like the kernel.
    """

    G_CTRL, S_CTRL, QUERYCTRL = 0xC008561B, 0xC008561C, 0xC0445624

    def __init__(self, cid: int = 0x009A090A, minimum: int = 0, maximum: int = 1023, step: int = 1,
                 default: int = 0, flags: int = 0, name: str = "Focus, Absolute"):
        self.cid, self.minimum, self.maximum, self.step, self.flags, self.name = cid, minimum, maximum, step, flags, name
        self.value = default
        self.default = default
        self.calls: list[tuple[int, bytes]] = []
        self.fail_next = 0
        self.fail_errno = errno.EBUSY
        self.closed = False

    def ioctl(self, request: int, buf: bytearray) -> None:
        if self.closed:
            raise OSError(errno.EBADF, "closed")
        self.calls.append((request, bytes(buf)))
        if self.fail_next > 0:
            self.fail_next -= 1
            raise OSError(self.fail_errno, "injected fault")
        if request == self.QUERYCTRL:
            if len(buf) != 68:
                raise OSError(errno.EFAULT, "bad queryctrl size")
            cid = struct.unpack_from("=I", buf, 0)[0]
            if cid != self.cid:
                raise OSError(errno.EINVAL, "no such control")
            struct.pack_into("=II32siiiiI2I", buf, 0, self.cid, 1, self.name.encode(), self.minimum, self.maximum,
                             self.step, self.default, self.flags, 0, 0)
        elif request in (self.G_CTRL, self.S_CTRL):
            if len(buf) != 8:
                raise OSError(errno.EFAULT, "bad control size")
            cid, value = struct.unpack("=Ii", bytes(buf))
            if cid != self.cid:
                raise OSError(errno.EINVAL, "no such control")
            if request == self.S_CTRL:
                if not self.minimum <= value <= self.maximum:
                    raise OSError(errno.ERANGE, "out of range")
                self.value = value
            struct.pack_into("=Ii", buf, 0, cid, self.value)
        else:
            raise OSError(errno.ENOTTY, f"inappropriate ioctl 0x{request:08x}")

    def close(self) -> None:
        self.closed = True


# --------------------------------------------------------------------------- serial
class FakeSerialPort:
    """A pyserial-like port: each line written goes to ``responder(line) -> reply bytes``.

    ``readline`` returns the next queued reply line, or b"" (a timeout) when
    none is queued.  Faults for the next replies: ``drop`` (no reply: the host
    times out), ``corrupt`` (one byte flipped: checksum error), ``garble``
    (replaced by noise), ``stale`` (an old reply is delivered first).
    """

    def __init__(self, responder: Callable[[bytes], bytes], timeout: float = 0.2):
        self.responder = responder
        self.timeout = timeout
        self.rx: deque[bytes] = deque()
        self.written: list[bytes] = []
        self.replies: list[bytes] = []
        self.drop = 0
        self.corrupt = 0
        self.garble = 0
        self.stale = 0
        self._partial = b""
        self.is_open = True

    def write(self, data: bytes) -> int:
        if not self.is_open:
            raise OSError(errno.EBADF, "port closed")
        self._partial += bytes(data)
        while b"\n" in self._partial:
            line, self._partial = self._partial.split(b"\n", 1)
            line += b"\n"
            self.written.append(line)
            reply = self.responder(line)
            if self.stale > 0 and self.replies:
                self.stale -= 1
                self.rx.append(self.replies[-1])
            self.replies.append(reply)
            if self.drop > 0:
                self.drop -= 1
                continue
            if self.corrupt > 0:
                self.corrupt -= 1
                b = bytearray(reply)
                b[len(b) // 2] ^= 0x01
                reply = bytes(b)
            elif self.garble > 0:
                self.garble -= 1
                reply = b"\x00\xff~~garbage~~\n"
            self.rx.append(reply)
        return len(data)

    def readline(self) -> bytes:
        return self.rx.popleft() if self.rx else b""

    def reset_input_buffer(self) -> None:
        self.rx.clear()

    @property
    def in_waiting(self) -> int:
        return sum(len(x) for x in self.rx)

    def close(self) -> None:
        self.is_open = False
