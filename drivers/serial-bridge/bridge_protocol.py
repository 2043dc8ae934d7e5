"""Serial-bridge firmware logic: the line protocol of PROTOCOL.md and the VCM chip.

Pure and portable: runs under MicroPython on the RP2040 (main.py feeds it
lines from USB CDC) and under CPython in the host tests (tests feed it lines
and a fake I2C bus).  Only what MicroPython has is used: no typing, no
dataclasses.  ``i2c`` is a ``machine.I2C``-like object with
``writeto(addr, buf)`` and ``readfrom_mem(addr, reg, n)`` (OSError on NACK).

Positions are VCM DAC codes.  Power-up follows the kernel's ``dw9807_active``
(raspberrypi/linux drivers/media/i2c/dw9807-vcm.c): power register on, then a
ramp from the chip's idle position ("park": 512 on the DW9817, 0 otherwise)
to the target, RAMP_CODES codes 1 ms apart; parking ramps back and powers down.
"""

PROTOCOL_VERSION = "1"
FIRMWARE = "hil-af-bridge"
FIRMWARE_VERSION = "1.0"

# Register tables (the same numbers as hil_af/drivers/vcm_chips.py).
CHIPS = {
    "dw9807": {"max": 1023, "park": 0, "ctl": 0x02, "on": 0x00, "off": 0x01, "pos": 0x03, "status": 0x05},
    "dw9817": {"max": 1023, "park": 512, "ctl": 0x02, "on": 0x00, "off": 0x01, "pos": 0x03, "status": 0x05},
    "dw9714": {"max": 1023, "park": 0},
    "ad5398": {"max": 1023, "park": 0},   # the DW9714 word without slew bits (ad5398_vcm.c)
}
RAMP_CODES = 16       # codes per ramp step when parking
STATUS_TRIES = 10     # STATUS polls, 1 ms apart
I2C_TRIES = 3         # attempts per I2C transfer


def crc8(data):
    """CRC-8/SMBUS (poly 0x07, init 0x00, no reflection) of ``data`` bytes."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def frame(body):
    """``body`` (str, no '*' or newline) as one wire line: body '*' CRC-8 hex '\\n', bytes."""
    raw = body.encode()
    return raw + b"*" + ("%02X" % crc8(raw)).encode() + b"\n"


def unframe(line):
    """The body str of one wire line; ValueError('BADFRAME'|'BADCRC') if it is not valid."""
    line = line.strip()
    star = line.rfind(b"*")
    if star < 0 or len(line) - star != 3:
        raise ValueError("BADFRAME")
    body, cc = line[:star], line[star + 1:]
    try:
        want = int(cc, 16)
    except ValueError:
        raise ValueError("BADFRAME")
    for b in body:
        if b < 0x20 or b > 0x7E:
            raise ValueError("BADFRAME")
    if crc8(body) != want:
        raise ValueError("BADCRC")
    return body.decode()


class BridgeError(Exception):
    def __init__(self, code, text):
        Exception.__init__(self, code, text)
        self.code = code
        self.text = text


class Bridge:
    """One VCM chip behind the line protocol."""

    def __init__(self, i2c, chip="dw9807", addr=0x0C, sleep_ms=None):
        if chip not in CHIPS:
            raise ValueError("unknown chip " + str(chip))
        self.i2c = i2c
        self.chip = chip
        self.t = CHIPS[chip]
        self.addr = addr
        self.sleep_ms = sleep_ms or (lambda ms: None)
        self.code = 0
        self.powered = False

    # -- the chip --------------------------------------------------------
    def _xfer(self, fn):
        err = None
        for _ in range(I2C_TRIES):
            try:
                return fn()
            except OSError as e:
                err = e
                self.sleep_ms(1)
        raise BridgeError("I2C", "bus error at 0x%02x: %s" % (self.addr, err))

    def _write(self, data):
        self._xfer(lambda: self.i2c.writeto(self.addr, bytes(data)))

    def _wait_ready(self):
        reg = self.t.get("status")
        if reg is None:
            return
        for _ in range(STATUS_TRIES):
            if self._xfer(lambda: self.i2c.readfrom_mem(self.addr, reg, 1))[0] == 0:
                return
            self.sleep_ms(1)
        raise BridgeError("BUSY", "status register stays busy")

    def power_up(self, target=None):
        """Power on, then ramp from the idle position to ``target`` (default: stay at idle)."""
        idle = self.t["park"]
        if "ctl" in self.t:
            self._write([self.t["ctl"], self.t["on"]])
            self.sleep_ms(1)
        else:
            self._write([(idle << 4) >> 8, (idle << 4) & 0xFF])  # DW9714/AD5398: PD = 0 at idle
            self.sleep_ms(12)
        self.powered = True
        self.code = idle
        self._ramp(idle if target is None else target)

    def _ramp(self, target):
        step = RAMP_CODES if target > self.code else -RAMP_CODES
        c = self.code
        while abs(target - c) > RAMP_CODES:
            c += step
            self.write_code(c)
            self.sleep_ms(1)
        self.write_code(target)

    def power_down(self):
        if "ctl" in self.t:
            self._write([self.t["ctl"], self.t["off"]])
        else:
            self._write([0x80, 0x00])  # DW9714: PD = 1
        self.powered = False

    def write_code(self, code):
        if not self.powered:
            self.power_up(code)
            return
        self._wait_ready()
        if "pos" in self.t:
            self._write([self.t["pos"], (code >> 8) & 0x03, code & 0xFF])
        else:
            word = code << 4
            self._write([(word >> 8) & 0xFF, word & 0xFF])
        self.code = code

    def park(self):
        target = self.t["park"]
        if not self.powered:
            self.power_up()
        self._ramp(target)
        self.power_down()
        return target

    # -- the protocol ------------------------------------------------------
    def handle_line(self, line):
        """One request line (bytes) -> one reply line (bytes), never raises."""
        try:
            body = unframe(line)
        except ValueError as e:
            return frame("- ERR %s %s" % (e.args[0], "request line failed its checks"))
        parts = body.split()
        if not parts or not parts[0].isdigit():
            return frame("- ERR BADFRAME no sequence number")
        seq = parts[0]
        try:
            return frame(seq + " OK " + self.command(parts[1:]))
        except BridgeError as e:
            return frame("%s ERR %s %s" % (seq, e.code, e.text))
        except Exception as e:  # a firmware bug must not kill the bridge
            return frame("%s ERR INTERNAL %s" % (seq, str(e).replace("*", " ")))

    def command(self, words):
        if not words:
            raise BridgeError("BADCMD", "empty command")
        cmd, args = words[0].upper(), words[1:]
        nargs = {"VERSION": 0, "STATUS": 0, "POS": 0, "PARK": 0, "MOVE": 1}.get(cmd)
        if nargs is None:
            raise BridgeError("BADCMD", "unknown command " + cmd)
        if len(args) != nargs:
            raise BridgeError("BADARG", "%s takes %d argument(s)" % (cmd, nargs))
        if cmd == "VERSION":
            return "%s %s proto=%s chip=%s" % (FIRMWARE, FIRMWARE_VERSION, PROTOCOL_VERSION, self.chip)
        if cmd == "STATUS":
            return "chip=%s addr=0x%02x pos=%d max=%d powered=%d" % (
                self.chip, self.addr, self.code, self.t["max"], 1 if self.powered else 0)
        if cmd == "POS":
            return str(self.code)
        if cmd == "PARK":
            return str(self.park())
        # MOVE
        if not args[0].isdigit():
            raise BridgeError("BADARG", "code must be a non-negative integer")
        code = int(args[0])
        if code > self.t["max"]:
            raise BridgeError("RANGE", "code %d outside 0..%d" % (code, self.t["max"]))
        self.write_code(code)
        return str(code)
