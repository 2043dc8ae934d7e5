"""``hil-af doctor [RIG] [--calibration CAL.json] [--json]``: what is present, what to fix.

Checks, each OK / WARN / FAIL with a line saying what to do:
  python + core libraries (numpy, onnxruntime, pyserial, smbus2: FAIL if missing),
  picamera2 (WARN if missing; FAIL if RIG needs it), torch (optional, training),
  device nodes /dev/i2c-*, /dev/v4l-subdev*, /dev/video*, /dev/ttyACM*|ttyUSB*
  (present? readable and writable by this user?), the shipped models
  (models_dir()/step1.onnx, step2.onnx: present and loadable), every rig profile
  in rigs_dir() (parses), the calibration files (``--calibration``, or the rig
  profile's ``[calibration]`` table: per_position, global, flatfield), and,
  with RIG, the rig itself: open it, capture one frame, and prove the lens
  moves: frames at 25 % and 75 % of the AF range (and 25 % again) must differ
  in sharpness, for every lens driver (else WARN: could not tell).
Exit status 1 if any check FAILs, else 0.  ``--json``: ``{"ok", "fails",
"warns", "checks": [{"name", "status", "detail", "fix"}]}``.
"""

from __future__ import annotations

import grp
import importlib
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from ..cli import add_json_option, emit_json

DEV = Path("/dev")

# device family -> (globs, URL schemes that use it, group that usually owns it)
NODES = {
    "i2c": (("i2c-*",), ("i2c",), "i2c"),
    "v4l-subdev": (("v4l-subdev*",), ("v4l2", "libcamera-lens"), "video"),
    "video": (("video*",), ("picamera2", "libcamera-lens"), "video"),
    "serial": (("ttyACM*", "ttyUSB*"), ("serial",), "dialout"),
}


@dataclass
class Check:
    name: str
    status: str  # OK | WARN | FAIL
    detail: str
    fix: str = ""


def add_arguments(p) -> None:
    p.add_argument("rig", nargs="?", default=None, metavar="RIG",
                   help="rig URL or profile: also open it, capture a frame and show that moving the lens changes sharpness")
    p.add_argument("--lens", default=None, metavar="URL", help="lens URL when RIG is a frame source only")
    p.add_argument("--calibration", default=None, metavar="CAL.json", help="calibration file to check")
    add_json_option(p)


def _import(name: str) -> tuple[bool, str]:
    try:
        mod = importlib.import_module(name)
    except Exception as e:  # ImportError, or a broken install raising anything
        return False, f"{type(e).__name__}: {e}"
    return True, str(getattr(mod, "__version__", getattr(mod, "VERSION", "")) or "installed")


def _rig_schemes(rig: str | None, lens: str | None) -> set[str]:
    """The URL schemes a RIG spec (URL or profile) uses; empty if it cannot tell."""
    if not rig:
        return set()
    urls = [rig, lens or ""]
    if "://" not in rig:
        try:
            from ..profiles import load_profile

            prof = load_profile(rig)
            urls = [prof["rig"]["source"], lens or prof["rig"].get("lens", "")]
        except Exception:
            return set()
    out = set()
    for u in urls:
        if "://" in u:
            s = u.split("://", 1)[0].lower()
            out.add(s[4:] if s.startswith("spy+") else s)
    return out


def check_libraries(needs: set[str]) -> list[Check]:
    out = [Check("python", "OK" if sys.version_info >= (3, 11) else "FAIL", sys.version.split()[0],
                 "" if sys.version_info >= (3, 11) else "hil-af needs Python >= 3.11")]
    for name, pip in (("numpy", "numpy"), ("onnxruntime", "onnxruntime"), ("serial", "pyserial"), ("smbus2", "smbus2")):
        ok, detail = _import(name)
        out.append(Check(f"import {name}", "OK" if ok else "FAIL", detail, "" if ok else f"pip install {pip}"))
    ok, detail = _import("picamera2")
    needed = bool(needs & {"picamera2", "libcamera-lens"})
    out.append(Check("import picamera2", "OK" if ok else ("FAIL" if needed else "WARN"), detail, "" if ok else
                     "needed for picamera2:// and libcamera-lens://: on Raspberry Pi OS 'sudo apt install python3-picamera2' "
                     "and make the venv with 'python3 -m venv --system-site-packages .venv'"))
    ok, detail = _import("torch")
    out.append(Check("import torch", "OK" if ok else "WARN", detail if ok else "not installed (optional)",
                     "" if ok else "only 'hil-af train' needs it: pip install -e '.[train]'"))
    return out


def _groups() -> set[str]:
    try:
        return {grp.getgrgid(g).gr_name for g in os.getgroups()}
    except (KeyError, OSError):
        return set()


def check_devices(needs: set[str], dev: Path | None = None,
                  access: Callable[[str, int], bool] = os.access) -> list[Check]:
    dev = dev or DEV
    out = []
    groups = _groups()
    for family, (globs, schemes, group) in NODES.items():
        nodes = sorted(p for g in globs for p in dev.glob(g))
        needed = bool(needs & set(schemes))
        if not nodes:
            out.append(Check(f"devices {family}", "FAIL" if needed else "WARN", f"no {dev}/{'|'.join(globs)}",
                             _missing_fix(family)))
            continue
        denied = [p.name for p in nodes if not access(str(p), os.R_OK | os.W_OK)]
        if denied:
            hint = f"add yourself to group '{group}' ({'you are not in it' if group not in groups else 'then log in again'}) " \
                   f"or install drivers/udev/60-hil-af.rules (docs/hardware.md)"
            out.append(Check(f"devices {family}", "FAIL" if needed else "WARN",
                             f"no read/write access to {', '.join(denied)}", hint))
        else:
            out.append(Check(f"devices {family}", "OK", ", ".join(p.name for p in nodes)))
    return out


def _missing_fix(family: str) -> str:
    return {
        "i2c": "enable the bus: dtparam=i2c_arm=on (header) or dtparam=i2c_vc=on (camera bus) in config.txt; "
               "only needed for i2c:// lenses",
        "v4l-subdev": "no camera/lens sub-devices: check the camera overlay (dtoverlay=imx708 ...) "
                      "and the ribbon cable (drivers/devicetree.md)",
        "video": "camera stack not loaded: check 'rpicam-hello --list-cameras'",
        "serial": "no USB serial port: plug in the serial bridge (drivers/serial-bridge/) if you use serial://",
    }[family]


def check_models() -> list[Check]:
    from ..paths import models_dir

    out = []
    d = models_dir()
    for name in ("step1.onnx", "step2.onnx"):
        p = d / name
        if not p.is_file():
            out.append(Check(f"model {name}", "WARN", f"{p} missing",
                             "the pe/pe2/hybrid methods need it: 'hil-af train --stacks DIR --out models' or set HIL_AF_MODELS"))
            continue
        try:
            import onnxruntime as ort

            sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
            ins = ", ".join(f"{i.name}{list(i.shape)}" for i in sess.get_inputs())
            out.append(Check(f"model {name}", "OK", f"{p} loads; inputs {ins}"))
        except Exception as e:
            out.append(Check(f"model {name}", "FAIL", f"{p} does not load: {type(e).__name__}: {e}",
                             "re-export it with 'hil-af train' or restore the shipped file"))
    return out


def check_profiles() -> list[Check]:
    from ..paths import rigs_dir
    from ..profiles import load_profile

    d = rigs_dir()
    files = sorted(d.glob("*.toml")) if d.is_dir() else []
    if not files:
        return [Check("rig profiles", "WARN", f"none in {d}", "write one (docs/hardware.md) or set HIL_AF_RIGS")]
    out = []
    for f in files:
        try:
            prof = load_profile(str(f))
            out.append(Check(f"profile {f.stem}", "OK", f"source {prof['rig']['source']}"))
        except Exception as e:
            out.append(Check(f"profile {f.stem}", "FAIL", str(e), f"fix {f}"))
    return out


def _profile_calibrations(rig: str | None) -> dict[str, Path]:
    """Files named in a rig profile's [calibration] table (per_position, global, flatfield),
    resolved beside the profile as the controller resolves them."""
    if not rig or "://" in rig:
        return {}
    try:
        from ..profiles import load_profile

        prof = load_profile(rig)
    except Exception:
        return {}
    out = {}
    for key, value in (prof.get("calibration") or {}).items():
        if isinstance(value, str) and value:
            p = Path(value)
            if not p.is_absolute():
                p = Path(prof["_path"]).parent / p
            out[key] = p
    return out


def _check_file(name: str, p: Path) -> Check:
    """Validate a calibration file with the loader that will use it (CAL.json or FLAT.npz)."""
    if not p.is_file():
        return Check(name, "FAIL", f"{p} does not exist", "check the path (relative paths are beside the rig profile)")
    from ..errors import HilAfError

    try:
        if p.suffix == ".npz":
            from ..calibration.flatfield import load_flatfield

            ff = load_flatfield(p)
            return Check(name, "OK", f"{p}: flat field for a {ff.sensor_hw[0]}x{ff.sensor_hw[1]} sensor")
        from ..calibration.store import load_calibration

        cal = load_calibration(p)
        return Check(name, "OK", f"{p}: {cal.get('kind')} calibration, grid {cal.get('grid')}, units {cal.get('lens_units')}")
    except (HilAfError, OSError, ValueError) as e:
        fix = "re-run 'hil-af calibrate flatfield'" if p.suffix == ".npz" else "re-run 'hil-af calibrate fit'"
        return Check(name, "FAIL", str(e), fix)


def check_calibration(path: str | None, rig: str | None) -> list[Check]:
    files = {"calibration": Path(path)} if path else {f"calibration {k}": p for k, p in _profile_calibrations(rig).items()}
    if not files:
        return [Check("calibration", "WARN", "none given",
                      "the pdaf methods need one: 'hil-af calibrate capture/fit', then --calibration CAL.json "
                      "or [calibration] per_position = \"CAL.json\" in the rig profile")]
    return [_check_file(name, p) for name, p in files.items()]


def check_rig(rig: str, lens: str | None) -> list[Check]:
    from ..drivers.registry import open_rig

    out = []
    t0 = time.perf_counter()
    try:
        r = open_rig(rig, lens=lens)
    except Exception as e:
        return [Check("rig open", "FAIL", f"{rig}: {type(e).__name__}: {e}",
                      "check the URL / profile and the device checks above")]
    with r:
        out.append(Check("rig open", "OK", f"{r.name} in {time.perf_counter() - t0:.2f} s"))
        try:
            t1 = time.perf_counter()
            f = r.source.capture()
            import numpy as np

            lo_hi = (float(np.min(f.left)), float(np.max(f.left)))
            status, fix = "OK", ""
            if not (np.all(np.isfinite(f.left)) and np.all(np.isfinite(f.right))):
                status, fix = "FAIL", "the frame has NaN/inf pixels: check format/layout in the URL"
            elif lo_hi[1] - lo_hi[0] <= 0:
                status, fix = "WARN", "the frame is flat (lens cap? exposure?)"
            elif f.white_level and lo_hi[0] >= f.white_level:
                status, fix = "WARN", "the frame is saturated: lower exposure_us/gain"
            out.append(Check("rig capture", status,
                             f"{f.shape[1]}x{f.shape[0]} views in {time.perf_counter() - t1:.3f} s, "
                             f"left {lo_hi[0]:.0f}..{lo_hi[1]:.0f} DN, lens {f.lens_position:g}", fix))
        except Exception as e:
            out.append(Check("rig capture", "FAIL", f"{type(e).__name__}: {e}", "see docs/hardware.md (format, layout)"))
        out.append(check_lens_moves(r))
    return out


def sharpness(frame) -> float:
    """Mean squared gradient of the left view's central half over its mean squared (1/px^2; unitless
    ratio): larger when sharper, independent of exposure."""
    import numpy as np

    v = np.asarray(frame.left, dtype=np.float64)
    h, w = v.shape
    v = v[h // 4: h - h // 4 or h, w // 4: w - w // 4 or w]
    if v.shape[0] < 2 or v.shape[1] < 2:
        v = np.asarray(frame.left, dtype=np.float64)
    g = np.mean(np.diff(v, axis=1) ** 2) + np.mean(np.diff(v, axis=0) ** 2)
    return float(g / max(float(np.mean(v)) ** 2, 1e-12))


def check_lens_moves(r, min_change: float = 0.05) -> Check:
    """Move the lens to 25 % and 75 % of its AF range (then back to 25 %), capture a frame after each
    settle, and compare sharpness: OK when it changed by more than ``min_change`` (relative) and by
    more than 3x the change between the two frames at 25 % (a still scene); else WARN "could not tell"."""
    try:
        lo, hi = (float(v) for v in (r.profile.get("af", {}).get("range") or r.lens.range))
        a, b = lo + 0.25 * (hi - lo), lo + 0.75 * (hi - lo)
        s = []
        for pos in (a, b, a):
            r.lens.move_to(pos)
            r.clock.sleep(r.lens.settle_time_s)
            s.append(sharpness(r.source.capture()))
        r.lens.move_to(a)
        change = abs(s[1] - s[0]) / max(s[0], s[1], 1e-12)
        noise = abs(s[2] - s[0]) / max(s[0], s[2], 1e-12)
        detail = (f"range {lo:g}..{hi:g}; sharpness {s[0]:.4g} at {a:g}, {s[1]:.4g} at {b:g}, {s[2]:.4g} back at "
                  f"{a:g}: changed {100 * change:.1f} % (repeat {100 * noise:.1f} %)")
        if change > min_change and change > 3 * noise:
            return Check("rig lens move", "OK", detail)
        return Check("rig lens move", "WARN", detail + ": could not tell whether the lens moved",
                     "put a textured target at a mid distance in view and check that nothing moves; if the image "
                     "never changes, the lens URL drives nothing (drivers/devicetree.md)")
    except Exception as e:
        return Check("rig lens move", "FAIL", f"{type(e).__name__}: {e}", "check the lens URL and wiring")


def run(args) -> int:
    needs = _rig_schemes(args.rig, args.lens)
    checks = check_libraries(needs) + check_devices(needs) + check_models() + check_profiles()
    checks += check_calibration(args.calibration, args.rig)
    from .doctor_lens_advice import check_lens_advice  # which lens URL fits this camera (issue 13)
    checks += check_lens_advice()
    if args.rig:
        checks += check_rig(args.rig, args.lens)
    fails = sum(c.status == "FAIL" for c in checks)
    warns = sum(c.status == "WARN" for c in checks)
    if args.json:
        emit_json({"ok": fails == 0, "fails": fails, "warns": warns, "checks": [asdict(c) for c in checks]}, args.json)
    if args.json != "-":
        width = max(len(c.name) for c in checks)
        for c in checks:
            print(f"{c.status:<4}  {c.name:<{width}}  {c.detail}")
            if c.fix and c.status != "OK":
                print(f"{'':<4}  {'':<{width}}  fix: {c.fix}")
        print(f"{len(checks)} checks: {fails} FAIL, {warns} WARN")
    return 1 if fails else 0
