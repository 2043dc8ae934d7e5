"""A seccomp harness that applies a systemd unit's syscall filter to a command, without systemd.

systemd cannot be asked to start a unit here (no system or user bus in CI
containers), so this does what systemd's ``SystemCallFilter=`` does
(systemd.exec(5)): the first ``SystemCallFilter=`` that is an allow list,
plus ``@default`` which systemd always adds to allow lists, minus every
later ``~`` list; syscalls not allowed get the unit's
``SystemCallErrorNumber=`` (errno) or, without it, systemd's default action:
the process is killed with SIGSYS.  The syscall groups are expanded by the
installed ``systemd-analyze syscall-filter``, and the filter is loaded with
libseccomp (the library systemd itself uses) through ctypes, in a launcher
that then ``exec``s the command.

``available()`` says why the harness cannot run (no systemd-analyze, no
libseccomp) or returns None.
"""

from __future__ import annotations

import ctypes.util
import errno
import json
import shutil
import subprocess
import sys
from test_systemd_units import parse_unit  # noqa: F401  (re-exported: the units as systemd reads them)

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000


def scmp_act_errno(e: int) -> int:
    return 0x00050000 | (e & 0xFFFF)


def available() -> str | None:
    if shutil.which("systemd-analyze") is None:
        return "systemd-analyze not installed (Debian/Ubuntu: apt-get install -y systemd)"
    if ctypes.util.find_library("seccomp") is None:
        return "libseccomp not installed (Debian/Ubuntu: apt-get install -y libseccomp2)"
    return None


def syscall_groups() -> dict[str, list[str]]:
    """Every ``@group`` of the installed systemd -> its members (syscalls and nested groups)."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    groups: dict[str, list[str]] = {}
    cur = None
    for line in out.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if not line.startswith((" ", "\t")) and s.startswith("@"):
            cur = groups.setdefault(s, [])
        elif cur is not None and not s.startswith("@known") and " " not in s:
            cur.append(s)
    return groups


def expand(items: list[str], groups: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for it in items:
        if it.startswith("@"):
            out |= expand(groups[it], groups)
        else:
            out.add(it.split(":", 1)[0])  # "name:errno" entries: the name
    return out


def unit_filter(unit: dict[str, dict[str, list[str]]]) -> tuple[set[str], int]:
    """(allowed syscalls, default action) of a parsed unit's [Service] section."""
    svc = unit["Service"]
    groups = syscall_groups()
    allowed: set[str] | None = None
    for value in svc.get("SystemCallFilter", []):
        deny = value.startswith("~")
        names = value.lstrip("~").split()
        if allowed is None:
            assert not deny, "this harness handles units whose first SystemCallFilter= is an allow list"
            allowed = expand(names + ["@default"], groups)
        elif deny:
            allowed -= expand(names, groups)
        else:
            allowed |= expand(names, groups)
    assert allowed is not None, "the unit has no SystemCallFilter="
    err = svc.get("SystemCallErrorNumber", [None])[-1]
    action = SCMP_ACT_KILL_PROCESS if err in (None, "", "kill") else scmp_act_errno(getattr(errno, err))
    return allowed, action


LAUNCHER = r"""
import ctypes, ctypes.util, json, os, sys
spec = json.loads(sys.argv[1])
lib = ctypes.CDLL(ctypes.util.find_library("seccomp"), use_errno=True)
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
lib.seccomp_load.argtypes = [ctypes.c_void_p]
ctx = lib.seccomp_init(spec["action"])
assert ctx, "seccomp_init failed"
for name in spec["allow"]:
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr >= 0:  # not a syscall of this architecture: nothing to allow
        rc = lib.seccomp_rule_add(ctx, 0x7FFF0000, nr, 0)
        assert rc == 0 or rc == -17, (name, rc)  # -EEXIST: an alias already added
rc = lib.seccomp_load(ctx)
assert rc == 0, f"seccomp_load failed: {rc}"
os.execv(spec["argv"][0], spec["argv"])
"""


def wrap(argv: list[str], allowed: set[str], action: int) -> list[str]:
    """``argv`` run under the filter (allowed syscalls, default action for the rest)."""
    spec = {"allow": sorted(allowed), "action": action, "argv": argv}
    return [sys.executable, "-c", LAUNCHER, json.dumps(spec)]
