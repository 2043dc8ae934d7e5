"""Raw formats and sensors as Picamera2/libcamera name them, for ``picamera2://``.

Facts checked in: picamera2 ``picamera2/formats.py`` (the Bayer formats:
S<ORDER>8/10/12/16, *_CSI2P, <ORDER>_PISP_COMP1, R* mono) and
``picamera2/sensor_format.py``; libcamera ``src/libcamera/property_ids_draft.yaml``
(``ColorFilterArrangement`` 0 RGGB, 1 GRBG, 2 GBRG, 3 BGGR, 4 RGB, 5 MONO) and
``src/libcamera/pipeline/rpi/pisp/pisp.cpp`` (a Pi 5 writes unpacked 16-bit
or PiSP-compressed raw only).  Bit depths are bits per pixel.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import BadInput

ORDERS = ("RGGB", "GRBG", "GBRG", "BGGR")      # ColorFilterArrangement 0..3 (libcamera property_ids_draft.yaml)
_CFA_MONO = 5

# Sensors whose raw output holds both photodiodes of every pixel, by Picamera2's Model property.
# None of the cameras with a Raspberry Pi kernel driver does (imx708, imx219, imx477, imx519, ov5647,
# ov64a40, ...): declare yours in the rig profile ([sensor] dual_pixel = true) until it is listed here.
DUAL_PIXEL_MODELS: frozenset[str] = frozenset()

_RAW_RE = re.compile(r"(?:S(?P<order>RGGB|GRBG|GBRG|BGGR)|R|Y)(?P<bits>\d+)(?P<packed>_CSI2P)?")
_PISP_RE = re.compile(r"(?P<order>RGGB|GRBG|GBRG|BGGR|MONO)_PISP_COMP[12]")


def is_pisp_compressed(fmt: str) -> bool:
    """True for the PiSP compressed raw formats (any Bayer order, or MONO; COMP1 or COMP2)."""
    return bool(_PISP_RE.fullmatch(str(fmt).upper()))


def bayer_order(fmt: str) -> str | None:
    """The Bayer order named by a raw format (``SGBRG10_CSI2P`` -> GBRG, ``BGGR_PISP_COMP1`` ->
    BGGR), None for mono formats (R/Y/MONO) and names that carry none."""
    f = str(fmt).upper()
    m = _RAW_RE.fullmatch(f) or _PISP_RE.fullmatch(f)
    order = m.group("order") if m else None
    return order if order in ORDERS else None


def unpacked16(fmt: str) -> str:
    """The unpacked 16-bit format of the same Bayer order (``S<ORDER>16``, or ``R16`` for mono)."""
    order = bayer_order(fmt)
    return f"S{order}16" if order else "R16"


def raw_format(fmt: str) -> tuple[str, int]:
    """(rawdecode format, bit depth) of a Picamera2 raw format name."""
    f = str(fmt).upper()
    if is_pisp_compressed(f):
        raise BadInput(f"raw format {fmt!r} is PiSP compressed, which hil-af does not decode: ask for "
                       f"{unpacked16(f)} (a Pi 5 writes unpacked 16-bit raw) or a *_CSI2P format "
                       f"(on a Pi 5 it re-requests {unpacked16(f)} by itself)")
    m = _RAW_RE.fullmatch(f)
    if not m:
        raise BadInput(f"raw format {fmt!r} is not supported: use a *_CSI2P packed format (e.g. SRGGB10_CSI2P) "
                       f"or an unpacked one (e.g. SRGGB16), any Bayer order or R (mono)")
    bits, packed = int(m.group("bits")), bool(m.group("packed"))
    if packed:
        if bits not in (10, 12):
            raise BadInput(f"raw format {fmt!r}: only 10- and 12-bit CSI-2 packing is supported")
        return ("RAW10" if bits == 10 else "RAW12"), bits
    if bits > 16:
        raise BadInput(f"raw format {fmt!r}: more than 16 bits per pixel")
    return "U16", bits


def check_dual_pixel(index: int, props: dict[str, Any], sensor: dict[str, Any]) -> None:
    """BadInput unless the camera is a dual-pixel sensor (known ``Model``, or declared in ``[sensor]``)."""
    model = str(props.get("Model", "unknown"))
    want = sensor.get("model")
    if want is not None and str(want) != model:
        raise BadInput(f"picamera2://{index}: the rig profile's [sensor] model is {want!r} but camera {index} "
                       f"reports Model {model!r}: wrong camera or wrong profile")
    if model in DUAL_PIXEL_MODELS or sensor.get("dual_pixel") is True:
        return
    cfa = props.get("ColorFilterArrangement")
    mosaic = f" Its raw is a {ORDERS[cfa]} Bayer mosaic: even and odd columns are different colours, " \
             f"not two sub-apertures." if isinstance(cfa, int) and 0 <= cfa < 4 else ""
    raise BadInput(f"picamera2://{index}: camera {index} ({model}) is not a dual-pixel sensor: its raw frames "
                   f"hold no left/right views.{mosaic} Use a dual-pixel sensor and declare it in the rig profile "
                   f"([sensor] dual_pixel = true), or focus this camera with contrast AF (README: which cameras "
                   f"work with which methods)")


def sensor_cfa(fmt: str, props: dict[str, Any], sensor: dict[str, Any], index: int) -> str:
    """The views' colour filter: a Bayer order or "mono" (profile ``cfa``, else the format, else the property)."""
    if "cfa" in sensor:
        c = str(sensor["cfa"])
        c = c.upper() if c.upper() in ORDERS else c.lower()
        if c not in ORDERS + ("mono",):
            raise BadInput(f"picamera2://{index}: [sensor] cfa must be one of {', '.join(ORDERS)}, mono; got {c!r}")
        return c
    order = bayer_order(fmt)
    if order:
        return order
    prop = props.get("ColorFilterArrangement")
    if prop is None or prop == _CFA_MONO or str(fmt).upper().startswith(("R", "Y", "MONO")):
        return "mono"
    if isinstance(prop, int) and 0 <= prop < 4:
        return ORDERS[prop]
    raise BadInput(f"picamera2://{index}: ColorFilterArrangement {prop!r} (RGB) is not a raw Bayer or mono sensor")
