"""I2C VCM driver: exact bytes on the wire per chip, STATUS polling, retries, parking, URL opening.

Runs against register-level chip models behind a fake bus (hil_af.drivers.fakes);
the URL tests go through the real SMBus2Bus with smbus2.SMBus replaced by a fake
that receives real i2c_msg objects.
"""

from __future__ import annotations

import errno
import math

import pytest

from hil_af.clock import SimClock
from hil_af.drivers.fakes import Ak7375Model, Dw98xxModel, Dw9714Model, FakeI2CBus, FakeSMBus, chip_model
from hil_af.drivers.i2c_bus import retry
from hil_af.drivers.i2c_vcm import I2CVcm
from hil_af.drivers.registry import open_lens
from hil_af.drivers.vcm_chips import AD5398, AK7375, CHIPS, DW9714, DW9807, DW9817, dw9714
from hil_af.errors import BadInput, DeviceError, DeviceTimeout

ADDR = 0x0C


def make(chip, model=None, **kw):
    model = model or chip_model(chip.name)
    bus = FakeI2CBus({ADDR: model})
    clock = SimClock()
    lens = I2CVcm(bus, ADDR, chip, clock=clock, **kw)
    return lens, bus, model, clock


# (chip, code, exact position write)
WIRE = [
    (DW9807, 0, bytes([0x03, 0x00, 0x00])),
    (DW9807, 512, bytes([0x03, 0x02, 0x00])),
    (DW9807, 1023, bytes([0x03, 0x03, 0xFF])),
    (DW9807, 300, bytes([0x03, 0x01, 0x2C])),
    (DW9817, 700, bytes([0x03, 0x02, 0xBC])),
    (AK7375, 4095, bytes([0x00, 0xFF, 0xF0])),
    (AK7375, 1000, bytes([0x00, 0x3E, 0x80])),
    (AK7375, 1, bytes([0x00, 0x00, 0x10])),
    (DW9714, 512, bytes([0x20, 0x00])),
    (DW9714, 1023, bytes([0x3F, 0xF0])),
    (dw9714(5), 300, bytes([0x12, 0xC5])),
    (AD5398, 1023, bytes([0x3F, 0xF0])),   # ad5398_vcm.c: focus << 4, bit 15 = power down
    (AD5398, 1, bytes([0x00, 0x10])),
]


@pytest.mark.parametrize("chip,code,wire", WIRE, ids=lambda v: getattr(v, "name", str(v)))
def test_exact_bytes_for_known_codes(chip, code, wire):
    lens, bus, model, _ = make(chip, ramp=4096)  # one write per move, even the first after power-up
    n0 = len(bus.writes())
    lens.move_to(code)
    assert bus.writes()[n0:] == [wire]
    assert chip.position_bytes(code) == wire
    assert model.code == code and lens.position == code
    assert not model.violations


@pytest.mark.parametrize("name,power_up", [
    ("dw9807", [bytes([0x02, 0x00]), bytes([0x03, 0x00, 0x00])]),
    ("dw9817", [bytes([0x02, 0x00]), bytes([0x03, 0x02, 0x00])]),   # idle position 512
    ("ak7375", [bytes([0x02, 0x00]), bytes([0x00, 0x00, 0x00])]),
    ("dw9714", [bytes([0x00, 0x00])]), ("ad5398", [bytes([0x00, 0x00])]),
])
def test_power_up_sequence_and_delay(name, power_up):
    lens, bus, model, clock = make(CHIPS[name])
    assert bus.writes() == power_up
    assert model.powered
    assert clock.monotonic() == pytest.approx(sum(s.delay_s for s in CHIPS[name].power_up))
    if name == "ak7375":
        assert clock.monotonic() >= 0.012  # 12 ms power-up


def test_dw9817_power_up_ramps_from_idle_like_dw9807_active():
    """dw9807-vcm.c: dw9807_active writes CTL 0x00 then dw9807_ramp(idle_pos=512, target), 16 codes 1 ms apart."""
    lens, bus, model, clock = make(DW9817)
    assert lens.position == 512 and model.lens_code == 512 and not bus.log[0][0] == "wr"
    t0 = clock.monotonic()
    lens.move_to(900)  # the first move after power-up is ramped from the idle position
    codes = [((w[1] & 3) << 8) | w[2] for w in bus.writes()[2:]]
    assert codes == list(range(528, 900, 16)) + [900]
    assert clock.monotonic() - t0 == pytest.approx(0.001 * (len(codes) - 1))
    n = len(bus.writes())
    lens.move_to(880)  # later moves: one write (ramp=0)
    assert len(bus.writes()) == n + 1 and model.code == 880 and not model.violations


def test_no_position_read_back_unless_asked():
    lens, bus, model, _ = make(DW9807)
    assert not any(e[0] == "wr" and e[2] != bytes([0x05]) for e in bus.log)  # only STATUS is ever read
    lens.move_to(300)
    assert lens.read_position() == 300  # the commanded code


def test_readback_falls_back_where_the_chip_does_not_answer(caplog):
    lens, _, _, _ = make(DW9807, readback=True)  # the model, like the kernel, shows no position read
    lens.move_to(300)
    assert lens.read_position() == 300 and lens.readback is False
    assert "read-back not supported" in caplog.text
    lens.move_to(310)
    assert lens.power_cycles == 0  # a refused read is not a power cycle


def test_readback_reads_the_registers_where_the_chip_answers():
    model = Dw98xxModel(readable=True)
    lens, bus, _, _ = make(DW9807, model, readback=True)
    lens.move_to(300)
    model.regs[0x03], model.regs[0x04] = 0x01, 0x90  # something else wrote 400
    assert lens.read_position() == 400 and lens.readback
    # one combined transfer: the MSB register address 0x03, then the two bytes MSB 0x03 + LSB 0x04
    assert bus.log[-1] == ("wr", ADDR, bytes([0x03]), bytes([0x01, 0x90]))


def test_readback_refusal_is_logged_with_the_device_and_the_reason(caplog):
    """A word chip (DW9714) has no register to address: the warning names the device and why."""
    lens, bus, _, _ = make(DW9714, readback=True)
    lens.move_to(300)
    n = len(bus.log)
    with caplog.at_level("WARNING", logger="hil_af.drivers.i2c_vcm"):
        assert lens.read_position() == 300 and lens.readback is False
    assert len(bus.log) == n  # nothing sent: there is no register to read
    label = "i2c addr 0x0c (dw9714)"
    assert [r.getMessage() for r in caplog.records] == [
        f"{label}: position read-back not supported ({label}: the chip has no position register to read); "
        "using the commanded code"]


@pytest.mark.parametrize("name", ["dw9817", "ak7375", "dw9714", "ad5398"])
def test_power_cycle_detected_and_power_up_rerun(name):
    """The VCM shares the sensor's regulator (cam1_reg in imx708.dtsi / the ad5398 overlays): the camera
    stops, the chip NACKs; it comes back without its registers; the next move powers it up again."""
    chip = CHIPS[name]
    lens, bus, model, clock = make(chip)
    lens.move_to(600)
    clock.sleep(1.0)
    model.power_off()
    with pytest.raises(DeviceError, match="is the camera streaming"):
        lens.move_to(620)
    model.power_on()
    assert not model.powered
    n = len(bus.writes())
    lens.move_to(640)
    assert model.powered and model.code == 640 and not model.violations
    assert lens.power_cycles == 1
    writes = bus.writes()[n:]
    assert writes[0] == chip.power_up[0].data  # power-up re-run first ...
    assert len(writes) > 3  # ... then a ramp from the idle position


def test_nack_after_idle_that_recovers_is_a_power_cycle():
    lens, bus, model, clock = make(DW9817)
    lens.move_to(700)
    clock.sleep(0.5)
    model.power_on()  # the chip was power-cycled while we were idle (registers lost) ...
    bus.fail_next = 1  # ... and NACKs the first transfer after the idle time
    lens.move_to(710)
    assert lens.power_cycles == 1 and model.powered and model.code == 710 and not model.violations


def test_nack_in_a_burst_is_retried_not_a_power_cycle():
    lens, bus, model, clock = make(DW9807)
    lens.move_to(100)
    bus.fail_next = 1  # no idle time before it
    lens.move_to(110)
    assert lens.power_cycles == 0 and model.code == 110


def test_status_polled_before_each_write_until_ready():
    model = Dw98xxModel(busy_polls=3)
    lens, bus, _, clock = make(DW9807, model)
    lens.move_to(100)
    t0 = clock.monotonic()
    lens.move_to(200)  # the chip reports busy 3 times after the first move
    polls = [e for e in bus.log if e[0] == "wr" and e[2] == bytes([0x05])]
    assert [p[3] for p in polls][-4:] == [b"\x01", b"\x01", b"\x01", b"\x00"]
    assert clock.monotonic() - t0 == pytest.approx(0.003)  # 3 polls 1 ms apart
    assert model.code == 200 and not model.violations


def test_status_stuck_busy_times_out_clearly():
    model = Dw98xxModel()
    lens, _, _, _ = make(DW9807, model)
    model.busy_polls = 1000
    lens.move_to(10)
    with pytest.raises(DeviceTimeout, match=r"STATUS register 0x05 still busy .* 10 polls"):
        lens.move_to(20)


@pytest.mark.parametrize("bad", [-1, 1024, 1e9, math.nan, math.inf, "near"])
def test_out_of_range_codes_rejected_before_the_bus(bad):
    lens, bus, _, _ = make(DW9807)
    n = len(bus.log)
    with pytest.raises(BadInput, match="dw9807"):
        lens.move_to(bad)
    assert len(bus.log) == n


def test_ak7375_accepts_12_bit_range():
    lens, _, model, _ = make(AK7375)
    assert lens.range == (0.0, 4095.0)
    lens.move_to(4000)
    assert model.code == 4000
    with pytest.raises(BadInput):
        lens.move_to(4096)


def test_eio_retried_with_exponential_backoff_then_succeeds():
    lens, bus, model, clock = make(DW9807)
    lens.move_to(300)  # the first move after power-up is a ramp: time the second
    bus.fail_next, bus.fail_errno = 2, errno.EIO
    t0 = clock.monotonic()
    lens.move_to(321)
    assert model.code == 321 and bus.failures == 2
    assert clock.monotonic() - t0 == pytest.approx(0.001 + 0.002)


def test_persistent_nack_becomes_device_error_naming_the_device():
    lens, bus, _, _ = make(DW9807, label="i2c bus 10 addr 0x0c (dw9807)")
    bus.fail_next = 100
    with pytest.raises(DeviceError, match=r"i2c bus 10 addr 0x0c \(dw9807\).*failed after 4 tries.*Remote I/O"):
        lens.move_to(5)


def test_retry_does_not_swallow_other_errors():
    calls = []

    def op():
        calls.append(1)
        raise ValueError("bug")

    with pytest.raises(ValueError):
        retry(op, what="x", clock=SimClock())
    assert len(calls) == 1


def test_ramped_move_steps_and_waits():
    lens, bus, model, clock = make(DW9807, ramp=100, ramp_step_s=0.002)
    n0 = len(bus.writes())
    t0 = clock.monotonic()
    lens.move_to(350)
    codes = [DW9807.decode_position(w[1:]) for w in bus.writes()[n0:]]
    assert codes == [100, 200, 300, 350]
    assert clock.monotonic() - t0 == pytest.approx(3 * 0.002)
    lens.move_to(320)  # within one step: a single write
    assert len(bus.writes()) == n0 + 5


@pytest.mark.parametrize("name,park", [("dw9807", 0), ("dw9817", 512), ("ak7375", 0), ("dw9714", 0)])
def test_close_ramps_to_park_code_then_powers_down(name, park):
    lens, bus, model, _ = make(CHIPS[name])
    lens.move_to(800)
    n0 = len(bus.writes())
    with lens:
        pass
    tail = bus.writes()[n0:]
    chip = CHIPS[name]
    assert tail[-1] == chip.power_down[0].data
    assert tail[-2] == chip.position_bytes(park)
    steps = [chip.decode_position(w[1:] if chip.position_reg is not None else w) for w in tail[:-1]]
    assert all(abs(a - b) <= chip.ramp_codes_per_step for a, b in zip([800] + steps, steps))
    assert model.code == park and not model.powered and bus.closed
    assert not model.violations
    lens.close()  # twice is fine
    with pytest.raises(DeviceError, match="closed"):
        lens.move_to(1)


def test_bad_address_rejected_and_bus_closed():
    bus = FakeI2CBus({})
    with pytest.raises(BadInput, match="0x80"):
        I2CVcm(bus, 0x80, DW9807)
    assert bus.closed


def test_absent_chip_fails_on_open_with_clear_error():
    bus = FakeI2CBus({})
    with pytest.raises(DeviceError, match="addr 0x0c.*failed after 4 tries"):
        I2CVcm(bus, ADDR, DW9807, clock=SimClock())
    assert bus.closed


# ---------------------------------------------------------------- through the URL and real smbus2 messages
@pytest.fixture
def smbus(mocker):
    import smbus2

    FakeSMBus.buses = {}
    mocker.patch.object(smbus2, "SMBus", FakeSMBus)
    return FakeSMBus.buses


@pytest.mark.parametrize("name", sorted(CHIPS))
def test_open_by_url_drives_chip_over_smbus2_messages(smbus, name):
    model = chip_model(name, readable=True)
    smbus[10] = bus = FakeI2CBus({ADDR: model})
    with open_lens(f"i2c://10/0x0c?chip={name}&readback=1", clock=SimClock()) as lens:
        lens.move_to(777)
        assert model.code == 777
        assert bus.writes()[-1] == CHIPS[name].position_bytes(777)
        assert lens.read_position() == 777  # register chips: a combined write+read i2c_rdwr
        assert lens.readback == (CHIPS[name].position_reg is not None)
    assert not model.powered and bus.closed


def test_url_dw9714_slew_bits_on_the_wire(smbus):
    model = Dw9714Model()
    smbus[1] = bus = FakeI2CBus({ADDR: model})
    lens = open_lens("i2c://1/12?chip=dw9714&slew=7", clock=SimClock())
    lens.move_to(16)
    assert bus.writes()[-1] == bytes([0x01, 0x07]) and model.slew == 7
    lens.close()


@pytest.mark.parametrize("url,msg", [
    ("i2c://1/0x0c", "chip="),
    ("i2c://1/0x0c?chip=dw9999", "unknown chip 'dw9999'"),
    ("i2c://one/0x0c?chip=dw9807", "bus 'one'"),
    ("i2c://1/zz?chip=dw9807", "address 'zz'"),
    ("i2c://1/X12?chip=dw9807", "address 'X12'"),   # the address as typed, not a part of it
    ("i2c://1/0x0c?chip=dw9807&speed=3", "unknown query parameter"),
    ("i2c://1/0x0c?chip=dw9807&slew=3", "slew applies to dw9714"),
    ("i2c://1/0x0c?chip=dw9714&slew=16", "slew must be 0..15"),
    ("i2c://1/0x0c?chip=dw9807&ramp=-5", "ramp"),
])
def test_url_errors_are_bad_input(smbus, url, msg):
    smbus[1] = FakeI2CBus({ADDR: Dw98xxModel()})
    with pytest.raises(BadInput, match=msg):
        open_lens(url)


def test_url_without_an_address_opens_the_chip_at_0x0c(smbus):
    """i2c://BUS?chip=...: the address defaults to 0x0c, where every supported chip answers."""
    smbus[1] = bus = FakeI2CBus({0x0C: Dw98xxModel(), 0x0D: Dw98xxModel()})
    with open_lens("i2c://1?chip=dw9807", clock=SimClock()) as lens:
        lens.move_to(5)
        assert lens.addr == 0x0C and "addr 0x0c" in lens.label
    assert {e[1] for e in bus.log} == {0x0C}


def test_missing_bus_device_says_what_to_do(smbus):
    with pytest.raises(DeviceError, match=r"/dev/i2c-7 does not exist"):
        open_lens("i2c://7/0x0c?chip=dw9807")


def test_spy_prefix_logs_every_call(smbus, caplog):
    smbus[1] = FakeI2CBus({ADDR: Dw98xxModel()})
    caplog.set_level("INFO", logger="hil_af.spy")
    lens = open_lens("spy+i2c://1/0x0c?chip=dw9807", clock=SimClock())
    lens.move_to(42)
    assert lens.position == 42
    with pytest.raises(BadInput):
        lens.move_to(5000)
    lens.close()
    calls = [(r.call, r.arg) for r in lens.log]
    assert calls == [("move_to", 42), ("position", None), ("move_to", 5000), ("close", None)]
    assert lens.log[2].error.startswith("BadInput") and lens.log[1].result == 42
    assert all(r.t_s > 0 and r.duration_s >= 0 for r in lens.log)
    assert "move_to(42)" in caplog.text and "raised BadInput" in caplog.text


def test_refuses_a_chip_owned_by_a_kernel_driver(smbus, tmp_path, monkeypatch):
    from hil_af.drivers import i2c_vcm

    drv = tmp_path / "drivers" / "dw9807"
    drv.mkdir(parents=True)
    dev = tmp_path / "devices" / "10-000c"
    dev.mkdir(parents=True)
    (dev / "driver").symlink_to(drv)
    monkeypatch.setattr(i2c_vcm, "SYSFS_I2C", tmp_path / "devices")
    smbus[10] = bus = FakeI2CBus({ADDR: Dw98xxModel()})
    with pytest.raises(DeviceError, match="kernel driver 'dw9807' owns 10-000c.*libcamera-lens"):
        open_lens("i2c://10/0x0c?chip=dw9807")
    assert bus.log == []  # not a single byte sent
    with open_lens("i2c://10/0x0c?chip=dw9807&force=1", clock=SimClock()) as lens:
        lens.move_to(3)
    assert bus.writes()
