"""The ``hil-af serve`` socket protocol (docs/daemon.md): one JSON object per line each way.

Requests::

    {"cmd": "focus"}                       optional "roi": [x, y, w, h] (view pixels), "method",
                                           "timeout" (seconds > 0), "range" (near|normal|full),
                                           "start" (native lens units)
    {"cmd": "status"}
    {"cmd": "mode", "mode": "manual" | "single" | "continuous"}
    {"cmd": "move", "position": p}         native lens units (a VCM DAC code)

Any request may carry an ``"id"`` (string or integer), echoed in its reply.
Every reply carries ``"ok": true|false``; a rejected request gets
``"ok": false`` and an ``"error"`` string naming what was wrong.  A line is
at most ``MAX_LINE_BYTES`` bytes (newline included); longer lines are
rejected without being parsed.

``parse_request`` turns any bytes into a ``Request`` or raises
``ProtocolError`` (a ``BadInput``); it never lets another exception out.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from ..errors import BadInput

MAX_LINE_BYTES = 64 * 1024

COMMANDS = ("focus", "status", "mode", "move")
MODES = ("manual", "single", "continuous")
METHODS = ("pe", "pe2", "pdaf", "pdaf-global", "cdaf", "hybrid", "cdaf-libcamera", "cdaf-fast")
RANGES = ("near", "normal", "full")

_ALLOWED_KEYS = {
    "focus": {"cmd", "id", "roi", "method", "timeout", "range", "start"},
    "status": {"cmd", "id"},
    "mode": {"cmd", "id", "mode"},
    "move": {"cmd", "id", "position"},
}


class ProtocolError(BadInput):
    """A request line that is not a valid request; the message says why."""

    def __init__(self, message: str, request_id: Any = None):
        super().__init__(message)
        self.request_id = request_id


@dataclass(frozen=True)
class Request:
    """One validated request.  ``roi`` is (x, y, w, h) in view pixels; ``position`` native units."""

    cmd: str
    id: str | int | None = None
    roi: tuple[int, int, int, int] | None = None
    method: str | None = None
    mode: str | None = None
    position: float | None = None
    timeout: float | None = None
    range: str | None = None
    start: float | None = None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:  # an integer too large for a float
        return False


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a valid JSON number")


def _short(v: Any, n: int = 60) -> str:
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def parse_request(line: bytes | str) -> Request:
    """Validate one request line (without or with its trailing newline)."""
    try:
        return _parse(line)
    except ProtocolError:
        raise
    except Exception as e:  # the contract: nothing but ProtocolError leaves the parser
        raise ProtocolError(f"invalid request: {type(e).__name__}: {e}") from None


def _parse(line: bytes | str) -> Request:
    if isinstance(line, str):
        line = line.encode("utf-8", "surrogatepass")
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(f"request line too long: {len(line)} bytes (limit {MAX_LINE_BYTES})")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(f"request is not UTF-8 text (byte {e.start})") from None
    text = text.strip()
    if not text:
        raise ProtocolError("empty request line (expected one JSON object)")
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ProtocolError("request JSON is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, NaN/Infinity, huge integers
        raise ProtocolError(f"request is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"request must be a JSON object, got {type(obj).__name__}")
    rid = obj.get("id")
    if rid is not None and not (isinstance(rid, str) and len(rid) <= 128 or _is_int(rid) and abs(rid) < 2**63):
        raise ProtocolError("'id' must be a string (<= 128 characters) or an integer")
    cmd = obj.get("cmd")
    if not isinstance(cmd, str):
        raise ProtocolError(f"request needs a 'cmd' string (one of {', '.join(COMMANDS)})", rid)
    if cmd not in COMMANDS:
        raise ProtocolError(f"unknown cmd {_short(cmd)} (known: {', '.join(COMMANDS)})", rid)
    extra = sorted(set(obj) - _ALLOWED_KEYS[cmd])
    if extra:
        raise ProtocolError(f"unknown key(s) for {cmd}: {', '.join(_short(k, 30) for k in extra)} "
                            f"(allowed: {', '.join(sorted(_ALLOWED_KEYS[cmd]))})", rid)
    if cmd == "focus":
        roi = obj.get("roi")
        if roi is not None:
            if not (isinstance(roi, list) and len(roi) == 4 and all(_is_int(v) for v in roi)):
                raise ProtocolError(f"'roi' must be [x, y, w, h] integers (view pixels), got {_short(roi)}", rid)
            x, y, w, h = roi
            if x < 0 or y < 0 or w <= 0 or h <= 0 or max(abs(v) for v in roi) > 1_000_000:
                raise ProtocolError(f"'roi' {roi} needs x, y >= 0 and w, h > 0", rid)
            roi = (x, y, w, h)
        method = obj.get("method")
        if method is not None and method not in METHODS:
            raise ProtocolError(f"unknown method {_short(method)} (known: {', '.join(METHODS)})", rid)
        timeout = obj.get("timeout")
        if timeout is not None and not (_is_number(timeout) and timeout > 0):
            raise ProtocolError(f"'timeout' must be a number of seconds > 0, got {_short(timeout)}", rid)
        af_range = obj.get("range")
        if af_range is not None and af_range not in RANGES:
            raise ProtocolError(f"'range' must be one of {', '.join(RANGES)}, got {_short(af_range)}", rid)
        start = obj.get("start")
        if start is not None and not _is_number(start):
            raise ProtocolError(f"'start' must be a finite number (native lens units), got {_short(start)}", rid)
        return Request("focus", rid, roi=roi, method=method, timeout=None if timeout is None else float(timeout),
                       range=af_range, start=None if start is None else float(start))
    if cmd == "mode":
        mode = obj.get("mode")
        if mode not in MODES:
            raise ProtocolError(f"'mode' must be one of {', '.join(MODES)}, got {_short(mode)}", rid)
        return Request("mode", rid, mode=mode)
    if cmd == "move":
        pos = obj.get("position")
        if not _is_number(pos):
            raise ProtocolError(f"'position' must be a finite number (native lens units), got {_short(pos)}", rid)
        return Request("move", rid, position=float(pos))  # type: ignore[arg-type]  # _is_number checked it
    return Request("status", rid)


def ok_reply(request: Request | None = None, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": True}
    if request is not None and request.id is not None:
        out["id"] = request.id
    out.update(fields)
    return out


def error_reply(message: str, request_id: Any = None, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": False}
    if request_id is not None:
        out["id"] = request_id
    out["error"] = " ".join(str(message).split()) or "error"
    out.update(fields)
    return out


def encode_reply(reply: dict[str, Any]) -> bytes:
    """One reply as a JSON line (numpy scalars become numbers; NaN/inf become null)."""
    return (json.dumps(_clean(reply), allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")


def _clean(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", None) == 0:  # numpy scalar
        v = v.item()
    if hasattr(v, "tolist") and callable(v.tolist):  # numpy array
        return _clean(v.tolist())
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "value") and isinstance(getattr(v, "value"), str):  # str Enums such as AFState
        return v.value
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)
