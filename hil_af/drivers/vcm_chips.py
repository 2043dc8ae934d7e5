"""Register tables of the I2C voice-coil-motor (VCM) driver chips, as data.

One ``VcmChip`` per chip; ``hil_af.drivers.i2c_vcm`` interprets them and the
serial-bridge firmware (drivers/serial-bridge/bridge_protocol.py) carries a
copy of the same numbers.  Facts checked in the Linux drivers of
raspberrypi/linux (``drivers/media/i2c/dw9807-vcm.c``, ``ak7375.c``,
``ad5398_vcm.c``, ``dw9714.c``) and its overlays:

* DW9807 / DW9817 (0x0C; the Camera Module 3 carries a DW9817:
  ``arch/arm/boot/dts/overlays/imx708.dtsi`` has ``dongwoon,dw9817-vcm``):
  CTL 0x02 (0x00 active, 0x01 power down); position MSB 0x03 (bits 9:8) +
  LSB 0x04 (bits 7:0) written as ONE transfer ``[0x03, (code >> 8) & 3,
  code & 0xFF]``; STATUS 0x05 polled until 0 before a write (1 ms apart, up
  to 10 tries); codes 0..1023; the kernel ramps 16 codes per ms.  The DW9817
  is bidirectional (+/-100 mA): zero current, its idle position, is 512.
  ``dw9807_active`` writes CTL 0x00 and then ramps from the idle position to
  the target; ``dw9807_standby`` ramps back to idle and writes CTL 0x01.
* AK7375 (0x0C): position register 0x00, two bytes big-endian ``code << 4``;
  codes 0..4095; register 0x02: 0x00 active, 0x40 standby; 12 ms power-up;
  ``ak7375_active`` ramps up from 0 in steps of 64 codes.
* DW9714 (0x0C): no register address: one 16-bit big-endian word
  ``PD<<15 | code << 4 | S`` (S = 4 slew-rate bits); codes 0..1023;
  PD = 1 powers the output down.
* AD5398 (0x0C, the VCM of IMX219 / OV5647 modules: the ``imx219`` and
  ``ov5647`` overlays' ``adi,ad5398`` node, ``VANA-supply = <&cam1_reg>``):
  the DW9714's word family without slew bits: ``PD<<15 | code << 4``,
  codes 0..1023, 0 = least current (infinity).

No kernel driver above reads a position register back (the DW98xx drivers
read STATUS only), so ``readback`` is False for every chip: hil-af reads
positions back only when asked (``i2c://...&readback=1``) and falls back to
the commanded code where the chip does not answer.  Every chip shares the
camera sensor's regulator in the overlays (``VDD-supply``/``VANA-supply`` =
``cam1_reg``): it loses power, and its registers, with the sensor.

Units: codes are DAC codes (the chip's native unit); delays in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Step:
    """One bus write of a power sequence, then a wait of ``delay_s`` seconds."""

    data: bytes
    delay_s: float = 0.0


@dataclass(frozen=True)
class VcmChip:
    """How to talk to one VCM chip.

    A position write is ``([position_reg] if not None) + word.to_bytes(2, "big")``
    with ``word = (code << position_shift) | position_low_bits``.
    """

    name: str
    default_addr: int
    code_max: int                      # codes are 0..code_max
    position_reg: int | None           # None: the chip has no register address (DW9714)
    position_shift: int                # word = code << shift | low bits
    position_low_bits: int             # e.g. DW9714 slew-rate bits S
    power_up: tuple[Step, ...]         # sent on open, in order
    power_down: tuple[Step, ...]       # sent on close after parking
    park_code: int                     # the idle (zero-current) position: ramped from on power-up, to on close
    status_reg: int | None = None      # poll until it reads 0 before a position write
    status_tries: int = 10
    status_interval_s: float = 0.001
    ramp_codes_per_step: int = 16      # ramped moves: codes per step ...
    ramp_step_s: float = 0.001         # ... and seconds between steps
    settle_s: float = 0.012            # mechanical settle after the last write, seconds
    readback: bool = False             # a kernel driver reads the position registers back (none does)

    def position_bytes(self, code: int) -> bytes:
        """The exact bytes of one position write for ``code`` (already range-checked)."""
        word = (int(code) << self.position_shift) | self.position_low_bits
        body = word.to_bytes(2, "big")
        return body if self.position_reg is None else bytes([self.position_reg]) + body

    def decode_position(self, raw: bytes) -> int:
        """Code from the two position-register bytes read back (inverse of ``position_bytes``)."""
        word = int.from_bytes(raw[:2], "big")
        return (word >> self.position_shift) & self.code_max


DW9807 = VcmChip(
    name="dw9807",
    default_addr=0x0C,
    code_max=1023,
    position_reg=0x03,
    position_shift=0,
    position_low_bits=0,
    power_up=(Step(bytes([0x02, 0x00]), 0.001),),
    power_down=(Step(bytes([0x02, 0x01]), 0.0),),
    park_code=0,
    status_reg=0x05,
)

# DW9817: the DW9807's register map, but bidirectional: zero current at mid-scale.
DW9817 = replace(DW9807, name="dw9817", park_code=512)

AK7375 = VcmChip(
    name="ak7375",
    default_addr=0x0C,
    code_max=4095,
    position_reg=0x00,
    position_shift=4,
    position_low_bits=0,
    power_up=(Step(bytes([0x02, 0x00]), 0.012),),
    power_down=(Step(bytes([0x02, 0x40]), 0.0),),
    park_code=0,
    ramp_codes_per_step=64,
)


def dw9714(slew: int = 0) -> VcmChip:
    """DW9714 with slew-rate bits ``slew`` (0..15) in the low nibble of every write."""
    if not 0 <= slew <= 15:
        raise ValueError(f"dw9714 slew bits must be 0..15, got {slew}")
    return VcmChip(
        name="dw9714",
        default_addr=0x0C,
        code_max=1023,
        position_reg=None,
        position_shift=4,
        position_low_bits=slew,
        power_up=(Step(bytes([0x00, slew]), 0.012),),   # PD = 0, code 0: output on at rest
        power_down=(Step(bytes([0x80, 0x00]), 0.0),),   # PD = 1
        park_code=0,
        settle_s=0.015,
    )


DW9714 = dw9714(0)

# AD5398: the DW9714 word without slew bits (ad5398_vcm.c: ``focus << 4``, bit 15 power-down).
# The kernel driver has no settle time; 15 ms is the DW9714's, assumed.
AD5398 = replace(dw9714(0), name="ad5398")

CHIPS: dict[str, VcmChip] = {c.name: c for c in (DW9714, DW9807, DW9817, AK7375, AD5398)}
