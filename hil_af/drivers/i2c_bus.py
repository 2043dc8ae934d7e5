"""A small I2C bus protocol, its smbus2 implementation, and retry with backoff.

Drivers talk to ``I2CBus`` (two calls: ``write`` and ``write_read``), never to
smbus2 directly, so tests run them against a fake bus with registers
(``hil_af.drivers.fakes.FakeI2CBus``).  ``SMBus2Bus`` maps both calls to one
``i2c_rdwr`` ioctl each (combined write + repeated-start read for
``write_read``), which is what the VCM chips expect.

Errors: the kernel reports a NACK or a bus fault as ``OSError`` (EIO,
EREMOTEIO, ENXIO, ETIMEDOUT); ``retry`` retries them with exponential
backoff on the injected clock, then raises ``DeviceError`` naming what failed.
"""

from __future__ import annotations

import logging
from typing import Callable, Protocol, TypeVar, runtime_checkable

from ..clock import Clock, SystemClock
from ..errors import BadInput, DeviceError

log = logging.getLogger(__name__)

T = TypeVar("T")


@runtime_checkable
class I2CBus(Protocol):
    """7-bit addressed I2C transfers."""

    def write(self, addr: int, data: bytes) -> None:
        """One write transfer of ``data`` to ``addr`` (raises OSError on NACK/bus fault)."""
        ...

    def write_read(self, addr: int, data: bytes, n: int) -> bytes:
        """Write ``data`` then read ``n`` bytes with a repeated start; returns the bytes read."""
        ...

    def close(self) -> None: ...


class SMBus2Bus:
    """``/dev/i2c-<bus>`` through smbus2's ``i2c_rdwr`` (imported lazily)."""

    def __init__(self, bus: int):
        try:
            from smbus2 import SMBus
        except ImportError as e:  # pragma: no cover - smbus2 is a core dependency
            raise DeviceError(f"smbus2 is not installed ({e}); pip install smbus2") from None
        self.bus_number = int(bus)
        try:
            self._bus = SMBus(self.bus_number)
        except FileNotFoundError:
            raise DeviceError(
                f"/dev/i2c-{bus} does not exist: enable the bus (dtparam=i2c_arm=on or the camera's "
                f"i2c_csi_dsi bus) and check 'ls /dev/i2c-*'") from None
        except PermissionError:
            raise DeviceError(
                f"no permission to open /dev/i2c-{bus}: add yourself to group 'i2c' "
                f"or install drivers/udev/60-hil-af.rules") from None

    def write(self, addr: int, data: bytes) -> None:
        from smbus2 import i2c_msg

        self._bus.i2c_rdwr(i2c_msg.write(addr, list(data)))

    def write_read(self, addr: int, data: bytes, n: int) -> bytes:
        from smbus2 import i2c_msg

        w = i2c_msg.write(addr, list(data))
        r = i2c_msg.read(addr, n)
        self._bus.i2c_rdwr(w, r)
        return bytes(r)

    def close(self) -> None:
        self._bus.close()


def retry(
    op: Callable[[], T],
    *,
    what: str,
    clock: Clock | None = None,
    tries: int = 4,
    base_delay_s: float = 0.001,
    factor: float = 2.0,
) -> T:
    """Run ``op``; on ``OSError`` wait base, base*factor, ... seconds and retry.

    After ``tries`` failures raise ``DeviceError("<what>: failed after N tries: <last error>")``.
    """
    if tries < 1:
        raise BadInput(f"retry tries must be >= 1, got {tries}")
    clock = clock or SystemClock()
    delay = base_delay_s
    last: OSError | None = None
    for attempt in range(1, tries + 1):
        try:
            return op()
        except DeviceError:
            raise
        except OSError as e:
            last = e
            log.debug("%s: attempt %d/%d failed: %s", what, attempt, tries, e)
            if attempt < tries:
                clock.sleep(delay)
                delay *= factor
    raise DeviceError(f"{what}: failed after {tries} tries: {last}") from last
