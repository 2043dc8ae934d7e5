"""Every hardware scheme is registered and listed; hardware libraries load lazily; udev rules are sane."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from hil_af.cli import main

REPO = Path(__file__).resolve().parents[1]
HW_SCHEMES = {"picamera2": "source", "libcamera-lens": "lens", "v4l2": "lens", "i2c": "lens", "serial": "lens"}


def test_drivers_json_lists_every_hardware_scheme(capsys):
    assert main(["drivers", "--json"]) == 0
    schemes = json.loads(capsys.readouterr().out)["schemes"]
    for scheme, kind in HW_SCHEMES.items():
        assert schemes[scheme].startswith(f"[{kind}]"), (scheme, schemes.get(scheme))
    assert "spy+<scheme>" in schemes


def test_listing_drivers_imports_no_hardware_library():
    code = ("import sys; from hil_af.drivers.registry import schemes; schemes(); "
            "print(sorted(m for m in ('picamera2', 'libcamera', 'smbus2', 'serial', 'fcntl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.strip() == "[]"


def test_udev_rules_cover_every_device_family():
    rules = (REPO / "drivers" / "udev" / "99-hil-af.rules").read_text()
    lines = [l for l in rules.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    for l in lines:
        for part in (p.strip() for p in l.split(",")):
            assert re.fullmatch(r'[A-Z_]+(\{[A-Za-z_]+\})?(==|=|\+=)"[^"]*"', part), part
        assert 'GROUP="hil-af"' in l and 'MODE="0660"' in l
    text = "\n".join(lines)
    for needle in ('KERNEL=="i2c-[0-9]*"', 'KERNEL=="v4l-subdev[0-9]*"', 'KERNEL=="video[0-9]*"',
                   'ATTRS{idVendor}=="2e8a"', 'ATTRS{idProduct}=="0005"'):
        assert needle in text
