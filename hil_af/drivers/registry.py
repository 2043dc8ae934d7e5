"""Drivers chosen by URL strings (as ``serial.serial_for_url`` does).

A scheme is registered with a *kind*: ``rig`` (opens a whole ``Rig``, e.g.
``sim://``, ``replay://``), ``source`` (a ``FrameSource``, e.g.
``picamera2://``) or ``lens`` (a ``LensActuator``, e.g. ``i2c://``).
Built-in driver modules register themselves when imported; third parties
add schemes through the entry-point group ``hil_af.drivers``: the entry
point's name is the scheme and it loads a ``DriverEntry`` (or a callable
``opener(url, ctx)`` with ``kind`` and ``description`` attributes).

A ``spy+`` prefix (``spy+i2c://1/0x0c?chip=dw9807``) wraps any lens in a
logger of every call (``hil_af.drivers.spy``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

from ..clock import Clock, SystemClock
from ..errors import BadInput, UnknownScheme
from ..optics import LensMap
from .base import FrameSource, LensActuator, Rig

KINDS = ("rig", "source", "lens")

# Modules that register the built-in schemes when imported.
BUILTIN_MODULES = (
    "hil_af.sim.rig",
    "hil_af.drivers.replay",
    "hil_af.drivers.picamera2_source",
    "hil_af.drivers.picamera2_focusfom",
    "hil_af.drivers.libcamera_lens",
    "hil_af.drivers.v4l2_lens",
    "hil_af.drivers.i2c_vcm",
    "hil_af.drivers.serial_bridge",
)


@dataclass(frozen=True)
class DriverURL:
    """A parsed driver URL: ``scheme://netloc/path?k=v``."""

    raw: str
    scheme: str
    netloc: str
    path: str
    query: dict[str, str]

    def get(self, key: str, default: Any = None, type: Callable[[str], Any] = str) -> Any:
        """Query parameter ``key`` converted by ``type``; BadInput naming it if it does not convert."""
        if key not in self.query:
            return default
        try:
            return type(self.query[key])
        except (TypeError, ValueError) as e:
            raise BadInput(f"{self.raw}: query parameter {key}={self.query[key]!r} is not a valid {type.__name__}: {e}") from None

    def unknown_keys(self, allowed: set[str]) -> None:
        """Raise BadInput if the query has keys outside ``allowed``."""
        bad = sorted(set(self.query) - allowed)
        if bad:
            raise BadInput(f"{self.raw}: unknown query parameter(s) {', '.join(bad)} (allowed: {', '.join(sorted(allowed)) or 'none'})")


@dataclass(frozen=True)
class DriverEntry:
    scheme: str
    kind: str
    opener: Callable[[DriverURL, dict[str, Any]], Any]
    description: str


_REGISTRY: dict[str, DriverEntry] = {}
_LOADED = False


def register(scheme: str, kind: str, description: str):
    """Decorator: register ``opener(url: DriverURL, ctx: dict)`` for ``scheme``."""
    if kind not in KINDS:
        raise ValueError(f"driver kind must be one of {KINDS}, got {kind!r}")

    def deco(opener):
        _REGISTRY[scheme] = DriverEntry(scheme, kind, opener, description)
        return opener

    return deco


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for mod in BUILTIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if not (e.name and (mod == e.name or mod.startswith(e.name + "."))):  # a missing dependency is a real bug
                raise
    for ep in importlib.metadata.entry_points(group="hil_af.drivers"):
        obj = ep.load()
        if isinstance(obj, DriverEntry):
            _REGISTRY[ep.name] = obj
        else:
            kind = getattr(obj, "kind", "lens")
            _REGISTRY[ep.name] = DriverEntry(ep.name, kind, obj, getattr(obj, "description", f"plugin {ep.value}"))


def schemes() -> dict[str, str]:
    """scheme -> one-line description, built-ins and plugins."""
    _load()
    out = {s: f"[{e.kind}] {e.description}" for s, e in sorted(_REGISTRY.items())}
    out["spy+<scheme>"] = "[lens] wraps any lens URL and logs every call"
    return out


def parse_url(url: str) -> DriverURL:
    if not isinstance(url, str) or "://" not in url:
        raise BadInput(f"not a driver URL (expected scheme://...): {url!r}")
    try:
        parts = urlsplit(url)
    except ValueError as e:  # e.g. "Invalid IPv6 URL" for an unbalanced '[' in the netloc
        raise BadInput(f"malformed driver URL {url!r}: {e}") from None
    try:
        query = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)))
    except ValueError as e:
        raise BadInput(f"{url}: malformed query string: {e}") from None
    return DriverURL(url, parts.scheme.lower(), parts.netloc, parts.path, query)


def _entry(url: DriverURL) -> DriverEntry:
    _load()
    entry = _REGISTRY.get(url.scheme)
    if entry is None:
        known = ", ".join([*sorted(_REGISTRY), "spy+<lens URL>"]) if _REGISTRY else "none"
        raise UnknownScheme(f"unknown driver scheme {url.scheme!r} in {url.raw!r}; known schemes: {known}")
    return entry


def _ctx(clock: Clock | None, lens_map: LensMap | None, profile: dict | None) -> dict[str, Any]:
    return {"clock": clock or SystemClock(), "lens_map": lens_map, "profile": profile or {}}


def open_lens(url: str, *, clock: Clock | None = None, lens_map: LensMap | None = None, profile: dict | None = None) -> LensActuator:
    """Open a lens actuator from its URL (a rig URL gives that rig's lens)."""
    spy = url.startswith("spy+")
    pu = parse_url(url[4:] if spy else url)
    entry = _entry(pu)
    obj = entry.opener(pu, _ctx(clock, lens_map, profile))
    lens = obj.lens if entry.kind == "rig" else obj
    if entry.kind == "source":
        raise BadInput(f"{url!r} is a frame source, not a lens")
    if spy:
        from .spy import SpyLens

        lens = SpyLens(lens, name=pu.raw)
    return lens


def open_source(url: str, *, clock: Clock | None = None, profile: dict | None = None) -> FrameSource:
    """Open a frame source from its URL (a rig URL gives that rig's source)."""
    pu = parse_url(url)
    entry = _entry(pu)
    if entry.kind == "lens":
        raise BadInput(f"{url!r} is a lens, not a frame source")
    obj = entry.opener(pu, _ctx(clock, None, profile))
    return obj.source if entry.kind == "rig" else obj


def open_rig(spec: str, *, lens: str | None = None, clock: Clock | None = None) -> Rig:
    """Open a rig from a rig URL, a source URL plus ``lens`` URL, or a rig profile TOML."""
    from ..profiles import is_profile_spec, load_profile

    profile: dict[str, Any] = {}
    if is_profile_spec(spec):
        profile = load_profile(spec)
        spec = profile["rig"]["source"]
        lens = lens or profile["rig"].get("lens") or None
    lens_map = None
    if "lens_map" in profile:
        lens_map = LensMap(tuple(profile["lens_map"]["dioptres"]), tuple(profile["lens_map"]["codes"]))
    pu = parse_url(spec)
    entry = _entry(pu)
    ctx = _ctx(clock, lens_map, profile)
    if entry.kind == "rig":
        rig = entry.opener(pu, ctx)
        if lens:
            rig.lens.close()
            rig.lens = open_lens(lens, clock=ctx["clock"], lens_map=rig.lens_map or lens_map, profile=profile)
        if profile:
            rig.profile = {**rig.profile, **profile}
        return rig
    if entry.kind == "lens":
        raise BadInput(f"{spec!r} is a lens URL; a rig needs a frame source or rig URL (give the lens with --lens)")
    if not lens:
        raise BadInput(f"{spec!r} is a frame source only: give a lens URL (--lens URL) or use a rig profile that names one")
    source = entry.opener(pu, ctx)
    try:
        act = open_lens(lens, clock=ctx["clock"], lens_map=lens_map, profile=profile)
    except Exception:
        source.close()
        raise
    name = profile.get("rig", {}).get("name", spec)
    return Rig(source=source, lens=act, name=name, lens_map=lens_map, clock=ctx["clock"], profile=profile)
