"""Every hardware scheme is registered and listed; hardware libraries load lazily; udev rules are sane."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


RULES = REPO / "drivers" / "udev" / "60-hil-af.rules"


def _rules():
    """Each rule as (matches, assignments): (key, op, value) triples, as udev parses them."""
    out = []
    for line in RULES.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [p.strip() for p in line.split('", ')]
        triples = []
        for part in parts:
            m = re.fullmatch(r'([A-Z_]+(?:\{[A-Za-z_]+\})?)(==|!=|=|\+=)"?([^"]*)"?', part)
            assert m, part
            triples.append(m.groups())
        out.append(([t for t in triples if t[1] in ("==", "!=")], [t for t in triples if t[1] in ("=", "+=")]))
    return out


def _apply(rules, subsystem, kernel, node):
    """What udev does to ``node`` (owner, group, mode, acl, tags) for a device: GROUP=/OWNER=/MODE= replace
    (udev(7)), TAG+= adds a tag that systemd's 73-seat-late.rules turns into a seat-user ACL, RUN+= setfacl
    adds an ACL entry."""
    node = dict(node, acl=set(), tags=set())
    env = {"SUBSYSTEM": subsystem, "KERNEL": kernel}
    for matches, assigns in rules:
        if not all(k in env and fnmatch.fnmatchcase(env[k], v) == (op == "==") for k, op, v in matches):
            continue  # (ATTRS{...} matches a USB parent: not these platform devices)
        for k, op, v in assigns:
            if k in ("GROUP", "OWNER", "MODE"):
                node[k.lower()] = v
            elif k == "TAG":
                node["tags"].add(v)
            elif k == "RUN" and "setfacl -m" in v:
                node["acl"].add(v.split("-m ", 1)[1].split()[0])
    return node


@pytest.mark.parametrize("subsystem,kernel,group", [
    ("i2c-dev", "i2c-10", "i2c"), ("video4linux", "v4l-subdev1", "video"), ("video4linux", "video0", "video"),
    ("media", "media0", "video"), ("dma_heap", "linux,cma", "video"),
])
def test_udev_rules_add_access_and_take_none_away(subsystem, kernel, group):
    """Raspberry Pi OS gives these nodes to i2c / video: the rules must keep that and add to it."""
    before = {"owner": "root", "group": group, "mode": "0660"}
    after = _apply(_rules(), subsystem, kernel, before)
    assert (after["owner"], after["group"], after["mode"]) == ("root", group, "0660")  # members keep access
    assert "g:hil-af:rw" in after["acl"] and "uaccess" in after["tags"]


def test_udev_rules_file_sorts_before_seat_late_and_covers_every_family():
    assert RULES.name < "73-seat-late.rules"  # else the uaccess tag is added after systemd looked for it
    rules = _rules()
    for matches, assigns in rules:
        keys = {k for k, _, _ in assigns}
        assert not keys & {"GROUP", "OWNER", "MODE"}
        assert ("TAG", "+=", "uaccess") in assigns
    text = RULES.read_text()
    for needle in ('KERNEL=="i2c-[0-9]*"', 'KERNEL=="v4l-subdev[0-9]*"', 'KERNEL=="video[0-9]*"',
                   'ATTRS{idVendor}=="2e8a"', 'ATTRS{idProduct}=="0005"'):
        assert needle in text
