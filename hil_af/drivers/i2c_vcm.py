"""VCM lens driver chips on a raw I2C bus: ``i2c://``.

URL grammar::

    i2c://BUS/ADDR?chip=dw9714|dw9807|dw9817|ak7375|ad5398[&ramp=N][&ramp_ms=T]
                  [&slew=S][&settle_ms=T][&tries=K][&readback=1][&idle_ms=T]

    BUS       /dev/i2c-BUS: the camera connector's bus is 10 on a Pi 4
              (i2c_csi_dsi, dtparam=i2c_vc=on), 4 (CAM/DISP 1, the default
              camera) or 6 (CAM/DISP 0) on a Pi 5; 1 is the header bus
    ADDR      7-bit address, decimal or 0x hex (the chips answer at 0x0c)
    chip      which register table (hil_af.drivers.vcm_chips); required
    ramp      move in steps of N codes (0 = one write, the default)
    ramp_ms   milliseconds between ramp steps (default: the chip's, 1 ms)
    slew      DW9714 slew-rate bits S, 0..15 (default 0)
    settle_ms override the chip's mechanical settle time
    tries     attempts per transfer on EIO/NACK before failing (default 4)
    force     1: drive the chip even though a kernel driver is bound to it
              (refused by default: I2C_RDWR bypasses the kernel's ownership)
    readback  1: read the position registers back (no kernel driver does;
              where the chip does not answer, the commanded code is used)
    idle_ms   a NACK/EIO after this long without a transfer is taken as a
              power cycle (default 100 ms)

Positions are DAC codes (native units), 0..1023 (4095 for ak7375).  As the
kernel's ``dw9807_active`` does, power-up writes the chip's power register
and then starts from its idle position (DW9817: 512, the zero-current
mid-point; others: 0): the first move after a power-up is ramped from there
(the chip's ramp step, 16 codes/ms; 64 for the AK7375).  On close the lens
is ramped back to the idle position and the chip powered down.

Power cycles: the VCM shares the sensor's regulator (``cam1_reg`` in the
overlays), so it loses power, and its registers, whenever the camera
stops.  After ``idle_ms`` of quiet a move first re-writes the chip's power
register (DW98xx CTL, AK7375 mode: harmless, and it probes the chip; word
chips are probed by the position word itself).  A transfer that NACKs
(EREMOTEIO, as i2c-bcm2835 reports a NACK, or EIO) after ``idle_ms`` of quiet,
or an operation that fails after its retries, marks the chip as power
cycled: the next move re-runs the power-up sequence and ramps from the
idle position (``power_cycles`` counts them).  A power cycle completed
entirely while idle, with no failed transfer, is not seen: the re-written
power register still powers the chip up, but that move skips the ramp.

Use this only when no kernel VCM driver is bound to the chip (the kernel
driver would fight it): with ``dtoverlay=imx708`` the DW9817 belongs to the
kernel, so use ``libcamera-lens://`` or ``v4l2://`` there (drivers/devicetree.md).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
from pathlib import Path

from ..clock import Clock, SystemClock
from ..errors import BadInput, DeviceError, DeviceTimeout
from .base import ContextMixin
from .i2c_bus import I2CBus, SMBus2Bus, retry
from .registry import DriverURL, register
from .vcm_chips import CHIPS, VcmChip, dw9714

log = logging.getLogger(__name__)


def _hex(data: bytes) -> str:
    return " ".join(f"{b:02x}" for b in data)


class I2CVcm(ContextMixin):
    """A VCM chip driven through an ``I2CBus``; positions are DAC codes."""

    def __init__(
        self,
        bus: I2CBus,
        addr: int,
        chip: VcmChip,
        *,
        clock: Clock | None = None,
        ramp: int = 0,
        ramp_step_s: float | None = None,
        settle_s: float | None = None,
        tries: int = 4,
        label: str | None = None,
        readback: bool = False,
        idle_s: float = 0.1,
    ):
        problem = None
        if not 0x03 <= addr <= 0x77:
            problem = f"I2C address 0x{addr:02x} is outside the 7-bit range 0x03..0x77"
        elif ramp < 0:
            problem = f"ramp must be >= 0 codes per step, got {ramp}"
        elif tries < 1:
            problem = f"tries must be >= 1, got {tries}"
        if problem:
            with contextlib.suppress(OSError):
                bus.close()  # it was handed over to this driver
            raise BadInput(f"{label or chip.name}: {problem}")
        self.bus = bus
        self.addr = addr
        self.chip = chip
        self.clock = clock or SystemClock()
        self.ramp = int(ramp)
        self.ramp_step_s = chip.ramp_step_s if ramp_step_s is None else float(ramp_step_s)
        self._settle_s = chip.settle_s if settle_s is None else float(settle_s)
        self.tries = tries
        self.label = label or f"i2c addr 0x{addr:02x} ({chip.name})"
        self.readback = bool(readback)     # False after the chip failed to answer a read
        self.idle_s = float(idle_s)
        self.power_cycles = 0              # power cycles detected (power-up re-run)
        self._closed = False
        self._code = chip.park_code
        self._last_ok = -math.inf          # clock time of the last successful transfer
        self._power_lost = False
        self._fresh = True                 # the next move is the first after a power-up: ramp it
        try:
            self._power_up(chip.park_code)
            self._power_lost = False
        except Exception:
            self._close_bus()
            raise

    # -- protocol -------------------------------------------------------
    @property
    def position(self) -> float:
        """Last commanded position, DAC code."""
        return float(self._code)

    @property
    def range(self) -> tuple[float, float]:
        """(0, code_max) DAC codes."""
        return (0.0, float(self.chip.code_max))

    @property
    def settle_time_s(self) -> float:
        """Mechanical settle after the last write, seconds (ramp time is spent inside move_to)."""
        return self._settle_s

    def move_to(self, position: float) -> None:
        """Move to ``position`` (DAC code, rounded to an integer); out of range raises BadInput.

        After a detected power cycle the power-up sequence is re-run first (ramp from idle)."""
        code = self._check(position)
        if not self._power_lost and self.chip.position_reg is not None \
                and self.clock.monotonic() - self._last_ok >= self.idle_s:
            self._write(self.chip.power_up[0].data)  # harmless re-assert, and the probe after idle
        if not self._power_lost:
            step = self.ramp or (self.chip.ramp_codes_per_step if self._fresh else 0)
            self._ramp_to(code, step)
            self._fresh = False
        if self._power_lost:
            self.power_cycles += 1
            log.warning("%s: the chip NACKed after %g s idle: power cycled with the sensor; re-running power-up",
                        self.label, self.idle_s)
            self._power_up(code)
            self._power_lost = False

    def close(self) -> None:
        """Park the lens (ramped), power the chip down, release the bus; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._ramp_to(self.chip.park_code, self.ramp or self.chip.ramp_codes_per_step)
            for step in self.chip.power_down:
                self._write(step.data)
                self.clock.sleep(step.delay_s)
        finally:
            self._close_bus()

    # -- extras ---------------------------------------------------------
    def read_position(self) -> float:
        """Position read back from the chip (DAC code) with ``readback=1``; else, or where the chip
        does not answer the read (then ``readback`` turns False), the commanded code."""
        if not self.readback:
            return self.position
        try:
            return float(self._read_code())
        except DeviceError as e:
            log.warning("%s: position read-back not supported (%s); using the commanded code", self.label, e)
            self.readback = False
            self._power_lost = False  # a refused read is not a power cycle
            return self.position

    # -- internals ------------------------------------------------------
    def _check(self, position: float) -> int:
        if self._closed:
            raise DeviceError(f"{self.label}: lens is closed")
        try:
            p = float(position)
        except (TypeError, ValueError):
            raise BadInput(f"{self.label}: position {position!r} is not a number") from None
        if not math.isfinite(p):
            raise BadInput(f"{self.label}: position {position!r} is not finite")
        code = int(round(p))
        if not 0 <= code <= self.chip.code_max:
            raise BadInput(f"{self.label}: position {position!r} is outside the code range 0..{self.chip.code_max}")
        return code

    def _power_up(self, target: int) -> None:
        """The power-up steps, then from the idle position to ``target`` (ramped), as dw9807_active."""
        for step in self.chip.power_up:
            self._write(step.data)
            self.clock.sleep(step.delay_s)
        self._code = self.chip.park_code
        self._fresh = True
        if self.chip.position_reg is not None or target != self.chip.park_code:
            self._ramp_to(target, self.ramp or self.chip.ramp_codes_per_step)
            self._fresh = target == self.chip.park_code

    def _ramp_to(self, code: int, step: int) -> None:
        cur = self._code
        if step > 0 and abs(code - cur) > step:
            sign = 1 if code > cur else -1
            for c in range(cur + sign * step, code, sign * step):
                self._write_code(c)
                self.clock.sleep(self.ramp_step_s)
        self._write_code(code)

    def _write_code(self, code: int) -> None:
        self._wait_ready()
        self._write(self.chip.position_bytes(code))
        self._code = code

    def _wait_ready(self) -> None:
        reg = self.chip.status_reg
        if reg is None:
            return
        for _ in range(self.chip.status_tries):
            status = self._write_read(bytes([reg]), 1)
            if status[0] == 0:
                return
            self.clock.sleep(self.chip.status_interval_s)
        raise DeviceTimeout(
            f"{self.label}: STATUS register 0x{reg:02x} still busy (0x{status[0]:02x}) after "
            f"{self.chip.status_tries} polls {self.chip.status_interval_s * 1e3:g} ms apart")

    def _read_code(self) -> int:
        reg = self.chip.position_reg
        if reg is None:  # word chips (DW9714, AD5398) have no register to address
            raise DeviceError(f"{self.label}: the chip has no position register to read")
        return self.chip.decode_position(self._write_read(bytes([reg]), 2))

    def _transfer(self, op, what: str):
        """``op`` with retries; a first failure after ``idle_s`` of quiet, or running out of
        retries, marks a power cycle (see the module header)."""
        first = [True]

        def attempt():
            try:
                return op()
            except OSError as e:
                if first[0] and e.errno in _NACK and self.clock.monotonic() - self._last_ok >= self.idle_s:
                    self._power_lost = True
                first[0] = False
                raise

        try:
            out = retry(attempt, what=f"{self.label}: {what}", clock=self.clock, tries=self.tries)
        except DeviceError as e:
            self._power_lost = True
            raise DeviceError(f"{e} (the VCM is powered with the camera sensor: is the camera streaming?)") from e
        self._last_ok = self.clock.monotonic()
        return out

    def _write(self, data: bytes) -> None:
        self._transfer(lambda: self.bus.write(self.addr, data), f"write [{_hex(data)}]")

    def _write_read(self, data: bytes, n: int) -> bytes:
        out = self._transfer(lambda: self.bus.write_read(self.addr, data, n), f"read {n} byte(s) after [{_hex(data)}]")
        if len(out) != n:
            raise DeviceError(f"{self.label}: asked for {n} byte(s), got {len(out)}")
        return out

    def _close_bus(self) -> None:
        try:
            self.bus.close()
        except OSError:
            pass


# NACK / no device: raspberrypi/linux i2c-bcm2835.c returns EREMOTEIO on a NACK, EIO on other errors
_NACK = {errno.EREMOTEIO, errno.EIO, errno.ENXIO}

SYSFS_I2C = Path("/sys/bus/i2c/devices")


def bound_kernel_driver(bus: int, addr: int) -> str | None:
    """Name of the kernel driver bound to ``bus``/``addr`` (from sysfs), or None."""
    link = SYSFS_I2C / f"{bus}-{addr:04x}" / "driver"
    if not link.exists():
        return None
    return os.path.basename(os.path.realpath(link))


def _parse_addr(url: DriverURL) -> tuple[int, int]:
    bus_s = url.netloc
    addr_s = url.path.strip("/")
    try:
        bus = int(bus_s, 10)
    except ValueError:
        raise BadInput(f"{url.raw}: I2C bus {bus_s!r} is not a number (i2c://BUS/ADDR, e.g. i2c://10/0x0c)") from None
    try:
        addr = int(addr_s, 0) if addr_s else 0x0C
    except ValueError:
        raise BadInput(f"{url.raw}: I2C address {addr_s!r} is not a number (e.g. 0x0c)") from None
    return bus, addr


@register("i2c", "lens", "VCM chip on /dev/i2c-BUS via smbus2: i2c://BUS/ADDR?chip=dw9714|dw9807|dw9817|ak7375|ad5398 (DAC codes)")
def open_i2c(url: DriverURL, ctx: dict) -> I2CVcm:
    url.unknown_keys({"chip", "ramp", "ramp_ms", "slew", "settle_ms", "tries", "force", "readback", "idle_ms"})
    bus_n, addr = _parse_addr(url)
    name = url.get("chip")
    if name is None:
        raise BadInput(f"{url.raw}: say which chip: ?chip={'|'.join(CHIPS)}")
    if name not in CHIPS:
        raise BadInput(f"{url.raw}: unknown chip {name!r} (known: {', '.join(CHIPS)})")
    slew = url.get("slew", 0, int)
    if name != "dw9714" and "slew" in url.query:
        raise BadInput(f"{url.raw}: slew applies to dw9714 only")
    if not 0 <= slew <= 15:
        raise BadInput(f"{url.raw}: slew must be 0..15, got {slew}")
    chip = dw9714(slew) if name == "dw9714" else CHIPS[name]
    ramp_ms = url.get("ramp_ms", None, float)
    settle_ms = url.get("settle_ms", None, float)
    idle_ms = url.get("idle_ms", 100.0, float)
    readback = url.get("readback", 0, int)
    if readback not in (0, 1):
        raise BadInput(f"{url.raw}: readback must be 0 or 1, got {readback}")
    for key, val in (("ramp_ms", ramp_ms), ("settle_ms", settle_ms), ("idle_ms", idle_ms)):
        if val is not None and not (math.isfinite(val) and val >= 0):
            raise BadInput(f"{url.raw}: {key} must be a number >= 0, got {val}")
    ramp, tries = url.get("ramp", 0, int), url.get("tries", 4, int)
    owner = bound_kernel_driver(bus_n, addr)
    if owner and url.get("force", 0, int) != 1:
        raise DeviceError(
            f"{url.raw}: the kernel driver {owner!r} owns {bus_n}-{addr:04x}; raw I2C writes would fight it. "
            f"Use libcamera-lens://N (libcamera running) or v4l2:///dev/v4l-subdevN, "
            f"or add force=1 if you really mean it (drivers/devicetree.md)")
    bus = SMBus2Bus(bus_n)
    return I2CVcm(  # closes the bus itself if power-up or its checks fail
        bus, addr, chip, clock=ctx.get("clock"), ramp=ramp,
        ramp_step_s=None if ramp_ms is None else ramp_ms / 1e3,
        settle_s=None if settle_ms is None else settle_ms / 1e3,
        tries=tries, readback=bool(readback), idle_s=idle_ms / 1e3,
        label=f"i2c bus {bus_n} addr 0x{addr:02x} ({chip.name})",
    )
