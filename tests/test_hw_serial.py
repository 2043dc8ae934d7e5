"""Serial bridge: the firmware's protocol logic (drivers/serial-bridge/bridge_protocol.py)
against a fake I2C chip, and the host driver end to end through a fake port wired to it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from hil_af.clock import SimClock
from hil_af.drivers import serial_bridge as host
from hil_af.drivers.fakes import Dw98xxModel, Dw9714Model, FakeI2CBus, FakeSerialPort, MicroPythonI2C
from hil_af.drivers.registry import open_lens
from hil_af.drivers.vcm_chips import CHIPS
from hil_af.errors import BadInput, DeviceError, DeviceTimeout

FIRMWARE_DIR = Path(__file__).resolve().parents[1] / "drivers" / "serial-bridge"


def _load_firmware():
    spec = importlib.util.spec_from_file_location("bridge_protocol", FIRMWARE_DIR / "bridge_protocol.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fw = _load_firmware()


def rig(chip="dw9807", busy_polls=0):
    model = Dw9714Model() if chip in ("dw9714", "ad5398") else \
        Dw98xxModel(busy_polls=busy_polls, idle_code=512 if chip == "dw9817" else 0)
    bus = FakeI2CBus({0x0C: model})
    bridge = fw.Bridge(MicroPythonI2C(bus), chip=chip, addr=0x0C)
    port = FakeSerialPort(bridge.handle_line)
    return bridge, bus, model, port


# ---------------------------------------------------------------- the wire format
def test_crc8_check_value_and_host_firmware_agree():
    assert fw.crc8(b"123456789") == 0xF4 == host.crc8(b"123456789")
    for body in ("1 VERSION", "42 MOVE 1023", "- ERR BADCRC x"):
        assert fw.frame(body) == host.encode_line(body)


def test_protocol_md_example_lines_are_exact():
    bridge, *_ = rig()
    text = (FIRMWARE_DIR / "PROTOCOL.md").read_text()
    pairs = [(l[2:], r[2:]) for l, r in zip(text.splitlines(), text.splitlines()[1:])
             if l.startswith("> ") and r.startswith("< ")]
    assert len(pairs) == 3
    for req, rep in pairs:
        assert bridge.handle_line((req + "\n").encode()) == (rep + "\n").encode()


# ---------------------------------------------------------------- firmware logic
def test_firmware_move_writes_the_chip_after_polling_status():
    bridge, bus, model, _ = rig(busy_polls=2)
    assert bridge.handle_line(fw.frame("7 MOVE 0")) == fw.frame("7 OK 0")  # power-up at idle (0)
    bus.log.clear()
    assert bridge.handle_line(fw.frame("7 MOVE 300")) == fw.frame("7 OK 300")
    assert bridge.handle_line(fw.frame("8 MOVE 301")) == fw.frame("8 OK 301")
    assert model.code == 301 and model.powered and not model.violations
    assert bus.writes() == [bytes([0x03, 0x01, 0x2C]), bytes([0x03, 0x01, 0x2D])]
    polls = [e[3] for e in bus.log if e[0] == "wr"]
    assert polls == [b"\x01", b"\x01", b"\x00", b"\x01", b"\x01", b"\x00"]


def test_firmware_dw9817_power_up_ramps_from_idle_like_dw9807_active():
    """dw9807-vcm.c dw9807_active: CTL 0x00, then dw9807_ramp(idle_pos = 512, target), 16 codes a step."""
    bridge, bus, model, _ = rig("dw9817")
    assert bridge.handle_line(fw.frame("1 MOVE 600")) == fw.frame("1 OK 600")
    writes = bus.writes()
    assert writes[0] == bytes([0x02, 0x00])
    codes = [((w[1] & 3) << 8) | w[2] for w in writes[1:]]
    assert codes == [528, 544, 560, 576, 592, 600] and not model.violations
    assert bridge.handle_line(fw.frame("2 PARK")) == fw.frame("2 OK 512")
    assert model.code == 512 and not model.powered


def test_firmware_dw9714_word_and_park():
    bridge, bus, model, _ = rig("dw9714")
    bridge.handle_line(fw.frame("1 MOVE 512"))
    assert bus.writes()[-1] == bytes([0x20, 0x00]) and model.code == 512
    up = [((w[0] << 8 | w[1]) >> 4) for w in bus.writes()]
    assert up == list(range(0, 512, 16)) + [512]  # power-up at idle 0, then ramped up
    n = len(bus.writes())
    assert bridge.handle_line(fw.frame("2 PARK")) == fw.frame("2 OK 0")
    assert model.code == 0 and not model.powered
    steps = [((w[0] << 8 | w[1]) >> 4) for w in bus.writes()[n:-1]]
    assert steps[0] == 512 - 16 and steps[-1] == 0 and all(a - b <= 16 for a, b in zip([512] + steps, steps))


@pytest.mark.parametrize("line,reply", [
    (b"1 MOVE 5*00\n", "- ERR BADCRC"),
    (b"1 MOVE 5\n", "- ERR BADFRAME"),
    (b"\x00\xff*12\n", "- ERR BADFRAME"),
    (None, "3 ERR BADCMD"),
    (None, "4 ERR BADARG"),
    (None, "5 ERR RANGE"),
    (None, "6 ERR BADARG"),
])
def test_firmware_error_replies(line, reply):
    bridge, bus, model, _ = rig()
    reqs = {"3 ERR BADCMD": "3 JUMP", "4 ERR BADARG": "4 MOVE", "5 ERR RANGE": "5 MOVE 1024", "6 ERR BADARG": "6 MOVE -3"}
    out = bridge.handle_line(line if line is not None else fw.frame(reqs[reply]))
    assert fw.unframe(out).startswith(reply)
    assert model.code == 0


def test_firmware_reports_i2c_failure_after_its_retries():
    bridge, bus, _, _ = rig()
    bus.fail_next = 3
    assert fw.unframe(bridge.handle_line(fw.frame("9 MOVE 10"))).startswith("9 ERR I2C")


# ---------------------------------------------------------------- host end to end
def test_host_opens_moves_reads_and_parks():
    _, bus, model, port = rig("dw9817")
    lens = host.SerialBridgeLens(port, tries=3)
    assert "proto=1" in lens.version and lens.range == (0.0, 1023.0)
    lens.move_to(700.2)
    assert model.code == 700 and lens.position == 700 and lens.read_position() == 700
    with pytest.raises(BadInput, match="outside the code range"):
        lens.move_to(1024)
    lens.close()
    assert model.code == 512 and not model.powered and not port.is_open  # DW9817 parks mid-scale
    assert port.written[-1].split(b"*")[0].endswith(b"PARK")


@pytest.mark.parametrize("fault", ["drop", "corrupt", "garble", "stale"])
def test_host_recovers_from_one_bad_reply(fault):
    _, _, model, port = rig()
    lens = host.SerialBridgeLens(port, tries=3)
    setattr(port, fault, 1)
    lens.move_to(123)
    assert model.code == 123 and lens.position == 123
    if fault != "stale":
        assert lens.retries == 1
    if fault in ("corrupt", "garble", "stale"):
        assert lens.dropped >= 1
    seqs = [int(w.split(b" ")[0]) for w in port.written]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # a new SEQ per attempt


def test_host_resends_when_bridge_saw_a_corrupted_request():
    bridge, _, model, _ = rig()
    state = {"n": 0}

    def flaky(line):  # the first MOVE arrives damaged on the bridge side
        if b"MOVE" in line and state["n"] == 0:
            state["n"] += 1
            line = line.replace(b"MOVE 55", b"MOVE 56")
        return bridge.handle_line(line)

    lens = host.SerialBridgeLens(FakeSerialPort(flaky), tries=3)
    lens.move_to(55)
    assert model.code == 55 and lens.retries == 1


def test_host_times_out_clearly_when_bridge_is_silent():
    _, _, _, port = rig()
    lens = host.SerialBridgeLens(port, tries=3)
    port.drop = 10
    with pytest.raises(DeviceTimeout, match=r"'MOVE 5' failed after 3 tries: timed out"):
        lens.move_to(5)


def test_host_fails_clearly_on_persistent_checksum_errors():
    _, _, _, port = rig()
    lens = host.SerialBridgeLens(port, tries=2)
    port.corrupt = 10
    with pytest.raises(DeviceError, match="failed after 2 tries: checksum mismatch"):
        lens.move_to(5)


def test_host_surfaces_bridge_i2c_errors_after_retries():
    _, bus, _, port = rig()
    lens = host.SerialBridgeLens(port, tries=2)
    bus.fail_next = 100
    with pytest.raises(DeviceError, match="bridge error I2C"):
        lens.move_to(5)


def test_host_refuses_other_protocol_versions():
    port = FakeSerialPort(lambda line: fw.frame(line.decode().split()[0] + " OK hil-af-bridge 9.0 proto=9 chip=x"))
    with pytest.raises(DeviceError, match="protocol '9'"):
        host.SerialBridgeLens(port)
    assert not port.is_open


def test_open_by_url_uses_serial_for_url(mocker):
    _, _, model, port = rig()
    seen = {}

    def fake_for_url(url, **kw):
        seen.update(url=url, **kw)
        return port

    mocker.patch("serial.serial_for_url", side_effect=fake_for_url)
    with open_lens("serial:///dev/ttyACM0?baud=57600&timeout_ms=50", clock=SimClock()) as lens:
        lens.move_to(1000)
    assert seen == {"url": "/dev/ttyACM0", "baudrate": 57600, "timeout": 0.05}
    assert model.code == CHIPS["dw9807"].park_code and not model.powered


def test_open_by_url_loop_port_times_out_clearly():
    # pyserial's real loop:// echoes the request back: not a valid reply, so the host must give up cleanly
    with pytest.raises(DeviceError, match="VERSION"):
        open_lens("serial://loop://?timeout_ms=20&tries=2")


def test_missing_port_is_a_device_error():
    with pytest.raises(DeviceError, match="cannot open /dev/ttyNOPE"):
        open_lens("serial:///dev/ttyNOPE")


def test_firmware_logic_stays_micropython_portable():
    import ast

    tree = ast.parse((FIRMWARE_DIR / "bridge_protocol.py").read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert imports == []  # no typing/dataclasses/etc.: the module must load under MicroPython as is
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.AnnAssign, ast.Match))]
    main_src = (FIRMWARE_DIR / "main.py").read_text()
    assert "from bridge_protocol import Bridge" in main_src and "machine.I2C(" in main_src


def test_real_pyserial_over_a_pty_end_to_end():
    """The unmodified URL path: pyserial opens a real tty (a pty) whose other end runs the firmware logic."""
    import os
    import threading
    import tty

    bridge, bus, model, _ = rig()
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    stop = threading.Event()

    def firmware():
        buf = b""
        while not stop.is_set():
            try:
                chunk = os.read(master, 256)
            except OSError:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                os.write(master, bridge.handle_line(line + b"\n"))

    t = threading.Thread(target=firmware, daemon=True)
    t.start()
    try:
        with open_lens(f"serial://{path}?timeout_ms=500") as lens:
            lens.move_to(640)
            assert model.code == 640 and lens.read_position() == 640
        assert model.code == 0 and not model.powered  # parked on close
    finally:
        stop.set()
        os.close(slave)
        os.close(master)
        t.join(timeout=2)
