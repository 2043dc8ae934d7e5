"""``hil-af doctor``'s "lens driver" check: which lens URL fits the camera on this machine.

Read from sysfs only (no bus traffic):

- ``/sys/bus/i2c/devices/B-00AA/name``: the I2C clients the device tree
  declared (sensor ``imx708``, ``imx519``, ``imx219``...; VCM ``dw9807``,
  ``ak7375``, ``dw9714``...), and ``driver`` (a link when a kernel driver is bound);
- ``/sys/class/video4linux/v4l-subdevN/name``: the V4L2 sub-devices
  ("ak7375 10-000c").

The advice, per camera:

- IMX708 (Camera Module 3): libcamera drives the DW9807 lens and its
  ``rpi.af`` (PDAF + CDAF; the ``imx708.json`` tuning has it):
  ``libcamera-lens://0``; hil-af's contrast AF also runs on ``picamera2-fom://0``.
- A sensor whose libcamera tuning has no ``rpi.af`` (IMX519: the stock
  ``imx519.json`` has none, so Picamera2 reports "Control AfMode is not
  advertised") but whose VCM has a bound kernel driver: ``v4l2:///dev/v4l-subdevN``
  (AK7375 on the Arducam IMX519), or give libcamera a map with
  ``hil-af calibrate lensmap ... --tuning imx519.json``.
- A VCM declared on I2C without a bound driver (AD5398 modules, or an
  overlay without the lens): raw I2C, ``i2c://BUS/0xAA?chip=...``
  (``dw9714`` for the DW9714 and for AD5398/AD5820-style parts, which take
  the same 16-bit PD|code<<4|slew word; check your module's datasheet).
"""

from __future__ import annotations

from pathlib import Path

SYS = Path("/sys")
SENSORS_WITH_RPI_AF = {"imx708"}          # src/ipa/rpi/{vc4,pisp}/data/<sensor>.json holding rpi.af
VCM_CHIPS = {"dw9807": "dw9807", "dw9817": "dw9817", "ak7375": "ak7375", "dw9714": "dw9714",
             "ad5398": "dw9714", "ad5820": "dw9714", "ad5821": "dw9714", "ad5823": "dw9714"}
SENSOR_PREFIXES = ("imx", "ov", "ar", "gc", "s5k")


def _read(p: Path) -> str:
    try:
        return p.read_text().strip()
    except OSError:
        return ""


def _i2c_clients(root: Path) -> list[tuple[str, str, bool]]:
    """(client dir name 'B-00AA', chip name, driver bound) for every declared I2C client."""
    out = []
    base = root / "bus" / "i2c" / "devices"
    for d in sorted(base.glob("*-00*")) if base.is_dir() else []:
        name = _read(d / "name").split()[0] if _read(d / "name") else ""
        out.append((d.name, name.lower(), (d / "driver").exists()))
    return out


def _subdevs(root: Path) -> dict[str, str]:
    """chip-name -> /dev/v4l-subdevN for every V4L2 sub-device."""
    out = {}
    base = root / "class" / "video4linux"
    for d in sorted(base.glob("v4l-subdev*")) if base.is_dir() else []:
        name = _read(d / "name")
        if name:
            out[name.split()[0].lower()] = f"/dev/{d.name}"
    return out


def lens_advice(root: Path | None = None) -> tuple[str, str, str]:
    """(status OK|WARN, detail, fix) for the camera lens(es) sysfs shows."""
    root = SYS if root is None else root
    clients = _i2c_clients(root)
    subdevs = _subdevs(root)
    sensors = [n for _, n, _ in clients if n.startswith(SENSOR_PREFIXES)]
    vcms = [(c, n, bound) for c, n, bound in clients if n in VCM_CHIPS]
    if not sensors and not vcms:
        return "WARN", "no camera sensor or lens chip declared on I2C (sysfs)", \
            "connect the camera and enable its overlay (dtoverlay=..., see drivers/devicetree.md)"
    lines, fixes = [], []
    for sensor in sensors or ["(unknown sensor)"]:
        if sensor in SENSORS_WITH_RPI_AF:
            lines.append(f"{sensor}: libcamera drives the lens (rpi.af): libcamera-lens://0; "
                         f"contrast AF without raw: picamera2-fom://0 --method cdaf-fast")
            continue
        if not vcms:
            lines.append(f"{sensor}: no lens chip declared: fixed focus, or the overlay lacks the VCM")
            fixes.append("add the lens to the overlay (e.g. dtoverlay=imx519 declares the AK7375)")
            continue
        for client, chip, bound in vcms:
            bus, addr = client.split("-")
            if bound and chip in subdevs:
                lines.append(f"{sensor}: libcamera has no rpi.af for it; lens {chip} has a kernel driver: "
                             f"v4l2://{subdevs[chip]}")
                fixes.append("or let libcamera drive it: hil-af calibrate lensmap RIG --distances ... "
                             f"--tuning /usr/share/libcamera/ipa/rpi/vc4/{sensor}.json --out {sensor}-af.json")
            else:
                lines.append(f"{sensor}: lens {chip} at {bus}/0x{int(addr, 16):02x} has no kernel driver bound: "
                             f"raw I2C: i2c://{bus}/0x{int(addr, 16):02x}?chip={VCM_CHIPS[chip]}")
                fixes.append("raw I2C needs /dev/i2c-N access (group i2c); nothing else may drive the lens")
    status = "OK" if all("no lens chip" not in ln for ln in lines) else "WARN"
    return status, "; ".join(lines), "; ".join(dict.fromkeys(fixes))


def check_lens_advice() -> list:
    """The doctor check (a ``doctor.Check``) named "lens driver"."""
    from .doctor import Check

    status, detail, fix = lens_advice()
    return [Check("lens driver", status, detail, fix)]
