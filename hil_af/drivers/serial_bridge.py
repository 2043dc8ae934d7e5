"""A VCM behind a microcontroller serial bridge: ``serial://``.

URL grammar::

    serial:///dev/ttyACM0[?baud=115200][&timeout_ms=200][&tries=3][&settle_ms=15]
    serial://loop://        (any pyserial URL after serial://, e.g. for tests)

    baud        line speed (USB CDC ignores it; default 115200)
    timeout_ms  wait for one reply line (default 200 ms)
    tries       attempts per command on timeout / garbled reply / checksum error
    settle_ms   mechanical settle after a move (default 15 ms)

The line protocol (sequence numbers, CRC-8, error codes) is specified in
drivers/serial-bridge/PROTOCOL.md; the firmware is in drivers/serial-bridge/.
Positions are VCM DAC codes (native units); ``range`` comes from the
bridge's STATUS.  The port is opened with pyserial's ``serial_for_url``.
On close the bridge parks the lens and powers the chip down.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ..errors import BadInput, DeviceError, DeviceTimeout
from .base import ContextMixin
from .registry import DriverURL, register

log = logging.getLogger(__name__)

PROTOCOL_VERSION = "1"
_RETRY_CODES = {"BADFRAME", "BADCRC", "I2C", "BUSY"}


def crc8(data: bytes) -> int:
    """CRC-8/SMBUS (poly 0x07, init 0x00): the line checksum of PROTOCOL.md."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def encode_line(body: str) -> bytes:
    raw = body.encode("ascii")
    return raw + b"*%02X\n" % crc8(raw)


class _BadReply(Exception):
    pass


def decode_line(line: bytes) -> str:
    """Body of a reply line; _BadReply if framing or checksum is wrong."""
    line = line.strip()
    star = line.rfind(b"*")
    if star < 0 or len(line) - star != 3:
        raise _BadReply(f"no checksum in {line[:60]!r}")
    body = line[:star]
    try:
        want = int(line[star + 1:], 16)
        text = body.decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise _BadReply(f"unreadable line {line[:60]!r}") from None
    if crc8(body) != want:
        raise _BadReply(f"checksum mismatch in {line[:60]!r}")
    return text


class SerialBridgeLens(ContextMixin):
    """The host side of the bridge protocol over a pyserial-like port."""

    def __init__(self, port: Any, *, name: str = "serial bridge", tries: int = 3, settle_s: float = 0.015):
        """``port``: an open pyserial ``Serial`` (or anything with write/readline/reset_input_buffer/close)
        whose ``timeout`` bounds one reply wait."""
        self.port = port
        self.name = name
        self.tries = max(1, int(tries))
        self._settle_s = float(settle_s)
        self._seq = 0
        self._closed = False
        self.dropped = 0     # replies dropped: stale, garbled or failing their checksum
        self.retries = 0     # requests resent
        try:
            version = self.command("VERSION").split()
            fields = dict(w.split("=", 1) for w in version if "=" in w)
            if fields.get("proto") != PROTOCOL_VERSION:
                raise DeviceError(f"{name}: bridge speaks protocol {fields.get('proto')!r}, "
                                  f"this host speaks {PROTOCOL_VERSION!r}: update the firmware ({' '.join(version)})")
            self.version = " ".join(version)
            self.status = self.read_status()
            self._max = int(self.status["max"])
            self._pos = float(self.status.get("pos", 0))
        except Exception:
            port.close()
            raise

    # -- protocol --------------------------------------------------------
    @property
    def position(self) -> float:
        """Last code the bridge confirmed writing, DAC code."""
        return self._pos

    @property
    def range(self) -> tuple[float, float]:
        return (0.0, float(self._max))

    @property
    def settle_time_s(self) -> float:
        return self._settle_s

    def move_to(self, position: float) -> None:
        """Move to ``position`` (DAC code, rounded); out of range raises BadInput."""
        if self._closed:
            raise DeviceError(f"{self.name}: lens is closed")
        try:
            p = float(position)
        except (TypeError, ValueError):
            raise BadInput(f"{self.name}: position {position!r} is not a number") from None
        if not math.isfinite(p) or not 0 <= round(p) <= self._max:
            raise BadInput(f"{self.name}: position {position!r} is outside the code range 0..{self._max}")
        self._pos = float(int(self.command(f"MOVE {int(round(p))}")))

    def close(self) -> None:
        """Park the lens (the bridge ramps it and powers the chip down), close the port."""
        if self._closed:
            return
        self._closed = True
        try:
            self.command("PARK")
        finally:
            self.port.close()

    # -- extras ------------------------------------------------------------
    def read_position(self) -> float:
        return float(int(self.command("POS")))

    def read_status(self) -> dict[str, str]:
        return dict(w.split("=", 1) for w in self.command("STATUS").split() if "=" in w)

    def command(self, cmd: str) -> str:
        """Send ``cmd``; the fields after ``OK`` of its reply. Retries per PROTOCOL.md."""
        problem = "no reply"
        answered = False
        for attempt in range(1, self.tries + 1):
            if attempt > 1:
                self.retries += 1
                self.port.reset_input_buffer()
            self._seq = (self._seq + 1) % 10000
            seq = str(self._seq)
            self.port.write(encode_line(f"{seq} {cmd}"))
            while True:
                line = self.port.readline()
                if not line or not line.endswith(b"\n"):
                    problem = f"timed out waiting for the reply to {cmd!r}"
                    break
                try:
                    body = decode_line(line)
                except _BadReply as e:
                    self.dropped += 1
                    problem = str(e)
                    answered = True
                    log.debug("%s: dropped reply: %s", self.name, e)
                    break
                words = body.split(" ", 3)
                if words[0] not in (seq, "-"):
                    self.dropped += 1          # stale reply to an earlier request
                    continue
                answered = True
                if len(words) >= 2 and words[1] == "OK":
                    return body.split(" ", 2)[2] if len(words) > 2 else ""
                if len(words) >= 3 and words[1] == "ERR":
                    code, text = words[2], words[3] if len(words) > 3 else ""
                    if code in ("RANGE", "BADARG"):
                        raise BadInput(f"{self.name}: bridge refused {cmd!r}: {code} {text}")
                    if code not in _RETRY_CODES:
                        raise DeviceError(f"{self.name}: bridge error on {cmd!r}: {code} {text}")
                    problem = f"bridge error {code} {text}"
                    break
                self.dropped += 1
                problem = f"unexpected reply {body!r}"
                break
        msg = f"{self.name}: {cmd!r} failed after {self.tries} tries: {problem}"
        raise DeviceError(msg) if answered else DeviceTimeout(msg)


@register("serial", "lens", "VCM through the serial bridge firmware: serial:///dev/ttyACM0?baud=115200 (DAC codes)")
def open_serial(url: DriverURL, ctx: dict) -> SerialBridgeLens:
    url.unknown_keys({"baud", "timeout_ms", "tries", "settle_ms"})
    rest = url.raw.split("://", 1)[1].split("?", 1)[0]
    device = rest if "://" in rest else (url.netloc + url.path)
    if not device:
        raise BadInput(f"{url.raw}: no serial device (serial:///dev/ttyACM0)")
    baud = url.get("baud", 115200, int)
    timeout_ms = url.get("timeout_ms", 200.0, float)
    settle_ms = url.get("settle_ms", 15.0, float)
    if baud <= 0 or not (math.isfinite(timeout_ms) and timeout_ms > 0) or not (math.isfinite(settle_ms) and settle_ms >= 0):
        raise BadInput(f"{url.raw}: baud and timeout_ms must be > 0, settle_ms >= 0")
    import serial  # pyserial, a core dependency

    try:
        port = serial.serial_for_url(device, baudrate=baud, timeout=timeout_ms / 1e3)
    except serial.SerialException as e:
        hint = " (install drivers/udev/60-hil-af.rules or join group dialout)" if "ermission" in str(e) else ""
        raise DeviceError(f"{url.raw}: cannot open {device}: {e}{hint}") from None
    return SerialBridgeLens(port, name=f"serial bridge {device}", tries=url.get("tries", 3, int),
                            settle_s=settle_ms / 1e3)
