"""The systemd units: the hardening the daemon promises, command lines the CLI accepts, systemd-analyze verify."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from hil_af.cli import build_parser
from hil_af.controller.base import Limits

UNITS = Path(__file__).resolve().parents[1] / "systemd"
DAEMONS = ("hil-af.service", "hil-af@.service")
ALL = DAEMONS + ("hil-af-calibrate.service",)
DEVICE_CLASSES = {"char-video4linux", "char-media", "char-dma_heap", "char-i2c", "char-ttyACM"}


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value in order (systemd allows repeated keys)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"{path.name}: key outside a section: {line}"
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return out


def one(unit, section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values, f"[{section}] {key}= missing"
    return values[-1]


@pytest.mark.parametrize("name", ALL)
def test_hardening(name):
    u = parse_unit(UNITS / name)
    s = "Service"
    assert one(u, s, "User") == "hil-af"
    assert set(one(u, s, "SupplementaryGroups").split()) == {"video", "i2c", "dialout"}
    assert one(u, s, "DevicePolicy") == "closed"
    allowed = u[s]["DeviceAllow"]
    assert {a.split()[0] for a in allowed} == DEVICE_CLASSES
    assert all(a.split()[1] == "rw" for a in allowed)
    for key, want in [("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("NoNewPrivileges", "yes"),
                      ("PrivateNetwork", "yes"), ("Restart", "on-failure"), ("CapabilityBoundingSet", "")]:
        assert one(u, s, key) == want, key
    assert "AF_INET" not in one(u, s, "RestrictAddressFamilies")
    assert one(u, s, "StateDirectory").startswith("hil-af")


@pytest.mark.parametrize("name", DAEMONS)
def test_daemon_units_notify_watchdog_runtime_dir(name):
    u = parse_unit(UNITS / name)
    s = "Service"
    assert one(u, s, "Type") == "notify"
    assert one(u, s, "NotifyAccess") == "main"
    assert one(u, s, "ExecReload") == "/bin/kill -HUP $MAINPID"
    wd = one(u, s, "WatchdogSec")
    assert wd.isdigit() and int(wd) >= 2 * Limits().time_budget_s  # a whole focus cycle fits between pings
    rt = one(u, s, "RuntimeDirectory")
    argv = shlex.split(one(u, s, "ExecStart"))
    sock = argv[argv.index("--socket") + 1]
    assert sock.startswith(f"/run/{rt}/")
    assert one(u, "Install", "WantedBy") == "multi-user.target"


def _argv(unit_path: Path, instance: str = "cam0") -> list[str]:
    """ExecStart as the CLI would get it, with the unit's default Environment= and %i filled in."""
    u = parse_unit(unit_path)
    env = dict(e.split("=", 1) for e in u["Service"].get("Environment", []))
    line = one(u, "Service", "ExecStart").replace("%i", instance)
    for k, v in env.items():
        line = line.replace("${%s}" % k, v.replace("%i", instance)).replace("$" + k, v)
    argv = shlex.split(line)
    assert argv[0] == "/opt/hil-af/.venv/bin/hil-af"
    return argv[1:]


@pytest.mark.parametrize("name", ALL)
def test_exec_start_is_a_valid_command_line(name):
    argv = _argv(UNITS / name)
    args = build_parser().parse_args(argv)
    if argv[0] == "serve":
        assert args.rig.endswith(".toml") and args.mode == "single"
    else:
        assert argv[:2] == ["calibrate", "capture"] and args.resume and args.no_prompt  # unattended, resumable


def test_calibrate_unit_is_a_resumable_oneshot():
    u = parse_unit(UNITS / "hil-af-calibrate.service")
    assert one(u, "Service", "Type") == "oneshot"
    assert "--resume" in one(u, "Service", "ExecStart") and "--no-prompt" in one(u, "Service", "ExecStart")
    assert one(u, "Unit", "Conflicts") == "hil-af.service"


def test_systemd_analyze_verify(tmp_path):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed (Debian/Ubuntu: apt-get install -y systemd)")
    hil_af = shutil.which("hil-af") or "/bin/true"
    names = []
    for name in ALL:
        text = (UNITS / name).read_text().replace("/opt/hil-af/.venv/bin/hil-af", hil_af)
        target = "hil-af@cam0.service" if name == "hil-af@.service" else name  # verify needs an instance
        (tmp_path / target).write_text(text)
        names.append(str(tmp_path / target))
    p = subprocess.run([exe, "verify", "--man=no", *names], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stderr.strip() == "", p.stderr + p.stdout


def test_systemd_analyze_security_exposure_at_most_2(tmp_path):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed (Debian/Ubuntu: apt-get install -y systemd)")
    hil_af = shutil.which("hil-af") or "/bin/true"
    for name in ALL:
        target = "hil-af@cam0.service" if name == "hil-af@.service" else name
        (tmp_path / target).write_text((UNITS / name).read_text().replace("/opt/hil-af/.venv/bin/hil-af", hil_af))
        p = subprocess.run([exe, "security", "--offline=true", "--threshold=20", "--no-pager", str(tmp_path / target)],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0 and "Overall exposure level" not in p.stdout:  # e.g. systemd < 252: no --offline
            pytest.skip(f"this systemd-analyze has no offline security check: {p.stderr.strip()}")
        assert p.returncode == 0, f"{name}: exposure above 2.0\n{p.stdout[-2000:]}"
        assert "Overall exposure level" in p.stdout
