"""Rigs for the reliability tests: the simulated camera with a real lens driver on a fake bus.

The camera renders at the code held in the fake chip's registers (what the
lens physically does), so a transfer that fails on the bus shows in the frames.
Faults are injected only at the bus / port boundary (hil_af.drivers.fakes)
or through the sim's fault URL keys.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hil_af.clock import SimClock
from hil_af.controller.core import Controller
from hil_af.daemon.protocol import Request
from hil_af.daemon.service import AFService, ServiceConfig
from hil_af.drivers.fakes import Dw98xxModel, FakeI2CBus, FakeSerialPort, MicroPythonI2C
from hil_af.drivers.i2c_vcm import I2CVcm
from hil_af.drivers.registry import open_rig
from hil_af.drivers.serial_bridge import SerialBridgeLens
from hil_af.drivers.vcm_chips import CHIPS

REPO = Path(__file__).resolve().parents[1]
ADDR = 0x0C


class ChipProbe:
    """What the sim camera asks of its lens, answered from the fake chip's position registers."""

    def __init__(self, model: Dw98xxModel):
        self.model = model

    @property
    def actual_position(self) -> float:
        return float(self.model.code)

    @property
    def position(self) -> float:
        return float(self.model.code)


class ScheduledFaultBus(FakeI2CBus):
    """FakeI2CBus whose faults start at a given transfer: ``arm(after, n)`` fails n transfers from then on."""

    def __init__(self, devices):
        super().__init__(devices)
        self.transfers = 0
        self._plan: list[tuple[int, int]] = []

    def arm(self, after: int, n: int) -> None:
        self._plan.append((self.transfers + after, n))

    def _dev(self, addr):
        self.transfers += 1
        for at, n in list(self._plan):
            if self.transfers >= at:
                self.fail_next += n
                self._plan.remove((at, n))
        return super()._dev(addr)


def sim_rig(query: str = "", seed: int = 3):
    return open_rig(f"sim://?seed={seed}{'&' + query if query else ''}", clock=SimClock())


def i2c_rig(seed: int = 3):
    """(rig, bus, chip model): DW9807 over a fake bus, 4 tries per transfer."""
    rig = sim_rig(seed=seed)
    model = Dw98xxModel()
    bus = ScheduledFaultBus({ADDR: model})
    rig.lens.close()
    rig.lens = I2CVcm(bus, ADDR, CHIPS["dw9807"], clock=rig.clock, tries=4)
    rig.source.lens = ChipProbe(model)
    return rig, bus, model


def _firmware():
    spec = importlib.util.spec_from_file_location("bridge_protocol", REPO / "drivers" / "serial-bridge" / "bridge_protocol.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def bridge_rig(seed: int = 3):
    """(rig, port, chip model): the serial bridge firmware driving a DW9807, 3 tries per command."""
    rig = sim_rig(seed=seed)
    model = Dw98xxModel()
    bus = FakeI2CBus({ADDR: model})
    bridge = _firmware().Bridge(MicroPythonI2C(bus), chip="dw9807", addr=ADDR)
    port = FakeSerialPort(bridge.handle_line)
    rig.lens.close()
    rig.lens = SerialBridgeLens(port, tries=3)
    rig.source.lens = ChipProbe(model)
    return rig, port, model


def service(rig, method: str = "cdaf") -> AFService:
    """The daemon's AF service around ``rig`` with the real controller."""
    svc = AFService(ServiceConfig(rig="test-rig", method=method, lock_timeout_s=5.0))
    svc.rig, svc.controller = rig, Controller(rig, method=method)
    svc.open()
    return svc


def focus(svc: AFService, roi=None) -> dict:
    return svc.handle(Request("focus", roi=roi))
