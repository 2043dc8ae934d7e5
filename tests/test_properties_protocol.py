"""Property tests: the socket protocol parser turns any bytes into a request or a ProtocolError."""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil_af.daemon.protocol import COMMANDS, METHODS, MODES, ProtocolError, Request, encode_reply, error_reply, parse_request

# Derandomised in CI (same inputs every run); HIL_AF_PROPERTY_EXAMPLES=N for a random, longer hunt.
_DEEP = int(os.environ.get("HIL_AF_PROPERTY_EXAMPLES", "0"))
FAST = settings(max_examples=_DEEP or 300, derandomize=not _DEEP, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _check(line: bytes) -> None:
    try:
        req = parse_request(line)
    except ProtocolError as e:
        msg = str(e)
        assert msg and "\n" not in error_reply(msg)["error"]
        json.loads(encode_reply(error_reply(msg, e.request_id)))  # the error reply always encodes
        return
    assert isinstance(req, Request) and req.cmd in COMMANDS


@FAST
@given(st.binary(max_size=300))
def test_any_bytes(line):
    _check(line)


@FAST
@given(st.dictionaries(st.sampled_from(["cmd", "roi", "method", "mode", "position", "id", "x"]),
                       json_values | st.sampled_from(list(COMMANDS) + list(MODES) + list(METHODS)), max_size=5))
def test_any_json_object(obj):
    _check(json.dumps(obj).encode())


@FAST
@given(json_values)
def test_any_json_value(v):
    _check(json.dumps(v).encode())


@FAST
@given(cmd=st.sampled_from(COMMANDS), rid=st.none() | st.integers(-10**6, 10**6) | st.text(max_size=20),
       roi=st.none() | st.tuples(*[st.integers(0, 400)] * 2, *[st.integers(1, 400)] * 2),
       method=st.none() | st.sampled_from(METHODS), mode=st.sampled_from(MODES),
       position=st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-10**6, 10**6))
def test_valid_requests_round_trip(cmd, rid, roi, method, mode, position):
    obj: dict = {"cmd": cmd}
    if rid is not None:
        obj["id"] = rid
    if cmd == "focus":
        if roi is not None:
            obj["roi"] = list(roi)
        if method is not None:
            obj["method"] = method
    elif cmd == "mode":
        obj["mode"] = mode
    elif cmd == "move":
        obj["position"] = position
    req = parse_request(json.dumps(obj).encode() + b"\n")
    assert req.cmd == cmd and req.id == rid
    if cmd == "focus":
        assert req.roi == roi and req.method == method
    if cmd == "mode":
        assert req.mode == mode
    if cmd == "move":
        assert req.position == float(position)


@FAST
@given(st.binary(min_size=1, max_size=40), st.integers(0, 30))
def test_garbage_spliced_into_a_valid_request(junk, at):
    line = b'{"cmd":"focus","roi":[0,0,64,64]}'
    at = min(at, len(line))
    _check(line[:at] + junk + line[at:])
