"""mypy proves each driver class satisfies its protocol (FrameSource / LensActuator).

A generated file assigns an instance of every driver class to a variable of
the protocol type; a second file assigns a class that lacks ``move_to`` and
must be rejected, so the check is known to bite.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

LENS_CLASSES = [
    ("hil_af.drivers.i2c_vcm", "I2CVcm"),
    ("hil_af.drivers.v4l2_lens", "V4L2Lens"),
    ("hil_af.drivers.serial_bridge", "SerialBridgeLens"),
    ("hil_af.drivers.libcamera_lens", "LibcameraLens"),
    ("hil_af.drivers.spy", "SpyLens"),
    ("hil_af.drivers.replay", "ReplayLens"),
    ("hil_af.sim.lens", "SimLens"),
]
SOURCE_CLASSES = [
    ("hil_af.drivers.picamera2_source", "Picamera2Source"),
    ("hil_af.drivers.replay", "ReplaySource"),
    ("hil_af.sim.camera", "SimCamera"),
]


def _present(pairs):
    out = []
    for mod, cls in pairs:
        try:
            if hasattr(importlib.import_module(mod), cls):
                out.append((mod, cls))
        except ModuleNotFoundError:
            pass
    return out


def _program(lenses, sources) -> str:
    lines = ["from hil_af.drivers.base import FrameSource, LensActuator"]
    lines += [f"from {m} import {c}" for m, c in lenses + sources]
    lines.append("")
    args = [f"l{i}: {c}" for i, (_, c) in enumerate(lenses)] + [f"s{i}: {c}" for i, (_, c) in enumerate(sources)]
    lines.append(f"def check({', '.join(args)}) -> None:")
    lines += [f"    lens_{i}: LensActuator = l{i}" for i in range(len(lenses))]
    lines += [f"    source_{i}: FrameSource = s{i}" for i in range(len(sources))]
    return "\n".join(lines) + "\n"


BROKEN = '''from hil_af.drivers.base import LensActuator
from hil_af.drivers.base import ContextMixin


class NoMove(ContextMixin):
    @property
    def position(self) -> float:
        return 0.0

    @property
    def range(self) -> tuple[float, float]:
        return (0.0, 1.0)

    @property
    def settle_time_s(self) -> float:
        return 0.0

    def close(self) -> None:
        pass


def check(x: NoMove) -> None:
    bad: LensActuator = x
'''


def test_every_driver_class_satisfies_its_protocol(tmp_path):
    pytest.importorskip("mypy", reason="mypy is not installed")
    lenses, sources = _present(LENS_CLASSES), _present(SOURCE_CLASSES)
    assert len(lenses) >= 5 and len(sources) >= 1  # the hardware drivers at least
    good = tmp_path / "protocols_good.py"
    good.write_text(_program(lenses, sources))
    broken = tmp_path / "protocols_broken.py"
    broken.write_text(BROKEN)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports", "--no-error-summary",
         "--cache-dir", str(REPO / ".mypy_cache"), "--python-version", "3.11", str(good), str(broken)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    errors = [l for l in proc.stdout.splitlines() if ": error:" in l]
    good_errors = [l for l in errors if "protocols_good" in l]
    assert not good_errors, "\n".join(good_errors) + "\n--- program ---\n" + good.read_text()
    broken_errors = [l for l in errors if "protocols_broken" in l]
    assert any("LensActuator" in l and "move_to" in proc.stdout for l in broken_errors), proc.stdout + proc.stderr
