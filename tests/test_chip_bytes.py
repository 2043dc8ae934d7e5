"""Literal bytes on the I2C bus for every VCM chip: power-up, position, park, power-down.

The expected bytes are written out here from the chips' public sources, NOT
read from hil_af.drivers.vcm_chips (a test that compares the driver with its
own table cannot catch a wrong table):

* DW9807 / DW9817, Linux drivers/media/i2c/dw9807-vcm.c: DW9807_CTL_ADDR
  0x02; resume writes ``{0x02, 0x00}`` (power on), suspend ramps the lens
  down and writes ``{0x02, 0x01}`` (power down); a position is ONE transfer
  ``{0x03 (MSB_ADDR), (val >> 8) & 0x03, val & 0xff}`` after STATUS (0x05)
  reads 0.  Raspberry Pi's tree adds ``dongwoon,dw9817-vcm`` with
  ``dw9817_cfg.idle_pos = 512`` (the zero-current, powered-off lens position)
  where the DW9807's is 0.
* AK7375, drivers/media/i2c/ak7375.c: AK7375_REG_CONT 0x2, MODE_ACTIVE 0x0,
  MODE_STANDBY 0x40; position register 0x0 written as two bytes
  ``(val << 4) >> 8, (val << 4) & 0xff``; suspend ramps to 0 then standby.
* DW9714, drivers/media/i2c/dw9714.c and the DW9714 datasheet: no register
  address, one 16-bit big-endian word ``PD << 15 | D[9:0] << 4 | S[3:0]``
  (``DW9714_VAL(data, s) = data << 4 | s``); PD = 1 is power-down.

The bus below is the boundary: it records every transfer and answers reads
like the chip's registers (STATUS idle, position registers hold what was
written), nothing of the driver is replaced.
"""

from __future__ import annotations

import pytest

from hil_af.clock import SimClock
from hil_af.drivers.i2c_vcm import I2CVcm
from hil_af.drivers.vcm_chips import CHIPS, dw9714

ADDR = 0x0C


class RecordingBus:
    """An I2C bus: every write and write-read recorded; registers answer like the chip's."""

    def __init__(self):
        self.log: list[tuple[str, bytes]] = []
        self.regs: dict[int, int] = {}
        self.closed = False

    def write(self, addr: int, data: bytes) -> None:
        assert addr == ADDR
        data = bytes(data)
        self.log.append(("w", data))
        if len(data) >= 2:
            for i, b in enumerate(data[1:]):
                self.regs[data[0] + i] = b

    def write_read(self, addr: int, data: bytes, n: int) -> bytes:
        assert addr == ADDR
        self.log.append(("r", bytes(data)))
        if data[0] == 0x05:  # DW98xx STATUS: idle
            return bytes(n)
        return bytes(self.regs.get(data[0] + i, 0) for i in range(n))

    def close(self) -> None:
        self.closed = True

    def writes(self) -> list[bytes]:
        return [d for kind, d in self.log if kind == "w"]


def open_chip(chip):
    bus = RecordingBus()
    lens = I2CVcm(bus, ADDR, chip, clock=SimClock())
    return lens, bus


def test_dw9807_power_up_position_park_and_power_down_bytes():
    """Kills: DW9807 power-up byte changed (CTL 0x02 <- 0x00), position MSB/LSB split or register
    changed, park code not 0, power-down byte changed (CTL 0x02 <- 0x01) or dropped."""
    lens, bus = open_chip(CHIPS["dw9807"])
    assert bus.writes()[0] == bytes([0x02, 0x00])
    lens.move_to(0x2A5)
    assert bus.writes()[-1] == bytes([0x03, 0x02, 0xA5])
    # every position write is preceded by a STATUS (0x05) read, as the kernel's readx_poll_timeout
    i = bus.log.index(("w", bytes([0x03, 0x02, 0xA5])))
    assert bus.log[i - 1] == ("r", bytes([0x05]))
    lens.close()
    w = bus.writes()
    assert w[-1] == bytes([0x02, 0x01])
    assert w[-2] == bytes([0x03, 0x00, 0x00])  # parked at code 0 before power-down
    assert bus.closed


def test_dw9817_parks_at_mid_scale_512_then_powers_down():
    """Kills: DW9817 park code not 512 (kernel dw9817_cfg.idle_pos), power-up / power-down bytes changed."""
    lens, bus = open_chip(CHIPS["dw9817"])
    assert bus.writes()[0] == bytes([0x02, 0x00])
    lens.move_to(900)
    lens.close()
    w = bus.writes()
    assert w[-2] == bytes([0x03, 0x02, 0x00])  # 512 = 0x200
    assert w[-1] == bytes([0x02, 0x01])


def test_ak7375_active_standby_and_position_bytes():
    """Kills: AK7375 standby byte 0x40 -> anything else (e.g. 0x01: the chip never sleeps), active byte
    not 0x00, position not ``code << 4`` big-endian in register 0x00, park code not 0."""
    lens, bus = open_chip(CHIPS["ak7375"])
    assert bus.writes()[0] == bytes([0x02, 0x00])
    lens.move_to(0xABC)
    assert bus.writes()[-1] == bytes([0x00, 0xAB, 0xC0])
    lens.close()
    w = bus.writes()
    assert w[-2] == bytes([0x00, 0x00, 0x00])
    assert w[-1] == bytes([0x02, 0x40])


@pytest.mark.parametrize("slew", [0, 0xD])
def test_dw9714_power_word_position_word_and_pd_bit(slew):
    """Kills: DW9714 power-up word not PD=0/code 0 with the slew bits, position word not
    ``code << 4 | S``, power-down word without PD (bit 15), park code not 0."""
    lens, bus = open_chip(dw9714(slew))
    assert bus.writes()[0] == bytes([0x00, slew])
    lens.move_to(0x3C5)
    assert bus.writes()[-1] == bytes([0x3C, 0x50 | slew])
    lens.close()
    w = bus.writes()
    assert w[-2] == bytes([0x00, slew])  # code 0
    assert w[-1] == bytes([0x80, 0x00])


def test_ad5398_position_word_and_power_down_bit():
    """Kills: AD5398 position word not ``code << 4`` (no slew bits), power-down word without
    bit 15 set.  From the AD5398 datasheet: a 16-bit word, PD in bit 15 (1 = power down),
    D[9:0] in bits 13..4, bits 3..0 unused (Linux drivers/media/i2c/ad5398_vcm.c writes
    ``focus << 4``).  Linux drivers/regulator/ad5398.c names bit 15 CURRENT_EN (the opposite
    sense); the datasheet decides."""
    lens, bus = open_chip(CHIPS["ad5398"])
    lens.move_to(0x3C5)
    assert bus.writes()[-1] == bytes([0x3C, 0x50])
    lens.move_to(0x001)
    assert bus.writes()[-1] == bytes([0x00, 0x10])
    lens.close()
    assert bus.writes()[-1][0] & 0x80  # PD: powered down


@pytest.mark.parametrize("name,top", [("dw9807", 1023), ("dw9817", 1023), ("ak7375", 4095), ("dw9714", 1023), ("ad5398", 1023)])
def test_code_range_of_every_chip(name, top):
    """Kills: code_max changed (DW98xx/DW9714 10-bit DACs, AK7375 12-bit: kernel *_MAX_FOCUS_POS)."""
    from hil_af.errors import BadInput

    lens, bus = open_chip(CHIPS[name])
    assert lens.range == (0.0, float(top))
    lens.move_to(top)
    with pytest.raises(BadInput):
        lens.move_to(top + 1)


def test_every_chip_in_the_table_is_covered_here():
    """Kills: a chip added to CHIPS without literal-byte tests here.

    When AD5398 joins the table, add its literal test: the AD5398 datasheet has the
    DW9714 word layout (PD bit 15, D[9:0] in bits 13..4, S[3:0]), PD = 1 powers down;
    note that Linux drivers/regulator/ad5398.c calls bit 15 CURRENT_EN (set = enabled),
    the opposite sense: decide from the datasheet, not from either driver."""
    tested = {"dw9807", "dw9817", "ak7375", "dw9714", "ad5398"}
    assert set(CHIPS) <= tested, f"chips without literal-byte tests: {sorted(set(CHIPS) - tested)}"


@pytest.mark.parametrize("name", ["dw9807", "dw9817", "ak7375", "dw9714"])
def test_every_chip_answers_at_0x0c(name):
    """Kills: a chip's default address changed (all four answer at 7-bit 0x0c: the kernel device
    trees' ``reg = <0x0c>``, e.g. Raspberry Pi's imx708 overlay ``dw9817@c``)."""
    assert CHIPS[name].default_addr == 0x0C


# ---------------------------------------------------------------- timing and ramp facts of the kernel drivers
# (found surviving by the chip-tables mutation group, benchmarks/mutation.py; docs/mutation.md)


class TimedBus(RecordingBus):
    """A RecordingBus that also notes the (virtual) time of every write."""

    def __init__(self, clock):
        super().__init__()
        self.clock = clock
        self.times: list[float] = []

    def write(self, addr: int, data: bytes) -> None:
        super().write(addr, data)
        self.times.append(self.clock.monotonic())


def open_timed(chip):
    clock = SimClock()
    bus = TimedBus(clock)
    return I2CVcm(bus, ADDR, chip, clock=clock), bus, clock


def test_ak7375_moves_the_lens_in_steps_of_at_most_64_codes():
    """Kills: AK7375 ramp step 64 -> anything larger.  ak7375.c: ``AK7375_CTRL_STEPS 64``, the
    "minimum granularity of lens movement": resume ramps up from 0 and suspend ramps down to 0 in
    steps of 64 codes, 1 ms apart (``AK7375_CTRL_DELAY_US 1000``)."""
    lens, bus = open_chip(CHIPS["ak7375"])
    lens.move_to(640)  # the first move after power-up is ramped from 0, as ak7375_vcm_resume
    lens.close()       # and parking is ramped down to 0, as ak7375_vcm_suspend
    codes = [((w[1] << 8) | w[2]) >> 4 for w in bus.writes() if len(w) == 3 and w[0] == 0x00]
    assert 640 in codes and codes[-1] == 0
    steps = [abs(b - a) for a, b in zip([0] + codes, codes)]
    assert max(steps) == 64, steps  # 640 -> 0 and 0 -> 640 both take ten 64-code steps
    assert len(codes) >= 2 * 640 // 64


@pytest.mark.parametrize("name", ["dw9807", "dw9817", "ak7375", "dw9714", "ad5398"])
def test_close_returns_right_after_the_power_down_write(name):
    """Kills: a wait added after the power-down write (0.0 s -> anything).  None of the kernel
    drivers waits after it: dw9807_vcm_suspend and ak7375_vcm_suspend return right after the
    CTL / CONT standby write, dw9714 after the PD word (then only the regulator goes off)."""
    lens, bus, clock = open_timed(CHIPS[name])
    lens.move_to(300)
    lens.close()
    assert bus.writes()[-1][0] in (0x02, 0x80)  # the power-down write was the last one
    assert clock.monotonic() == bus.times[-1]


@pytest.mark.parametrize("slew", [0, 0xD])
def test_dw9714_waits_12_to_14_ms_after_power_up(slew):
    """Kills: the DW9714 power-up wait changed (0.012 s).  The DW9714 datasheet: "wait 12 ms after
    power on: the offset calibration of the internal amplifier is operating"; Linux dw9714.c
    (``media: dw9714: Fix powerup sequence``) sleeps ``usleep_range(12000, 14000)``."""
    lens, bus, clock = open_timed(dw9714(slew))
    assert bus.writes() == [bytes([0x00, slew])]
    assert 0.012 <= clock.monotonic() - bus.times[0] <= 0.014
    lens.move_to(100)
    assert bus.times[1] - bus.times[0] >= 0.012  # no position word during the calibration
