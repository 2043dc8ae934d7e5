"""The serve protocol parser: valid requests, and a named error for every kind of bad one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hil_af.controller.base import AFState
from hil_af.daemon.protocol import MAX_LINE_BYTES, ProtocolError, Request, encode_reply, error_reply, ok_reply, parse_request
from hil_af.errors import BadInput


@pytest.mark.parametrize("line, expected", [
    (b'{"cmd":"status"}\n', Request("status")),
    (b'{"cmd":"focus"}', Request("focus")),
    (b'  {"cmd": "focus", "roi": [10, 20, 64, 64], "method": "cdaf", "id": 7}\r\n',
     Request("focus", 7, roi=(10, 20, 64, 64), method="cdaf")),
    (b'{"cmd":"mode","mode":"continuous","id":"a"}', Request("mode", "a", mode="continuous")),
    (b'{"cmd":"move","position":512}', Request("move", position=512.0)),
    (b'{"cmd":"move","position":12.5}', Request("move", position=12.5)),
    ('{"cmd":"status"}', Request("status")),
])
def test_valid_requests(line, expected):
    assert parse_request(line) == expected


@pytest.mark.parametrize("line, fragment", [
    (b"", "empty request"),
    (b"   \n", "empty request"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"{cmd: status}", "not valid JSON"),
    (b'{"cmd":"status"', "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'"status"', "must be a JSON object"),
    (b"{}", "needs a 'cmd'"),
    (b'{"cmd": 3}', "needs a 'cmd'"),
    (b'{"cmd":"reboot"}', "unknown cmd 'reboot'"),
    (b'{"cmd":"status","verbose":true}', "unknown key(s) for status: 'verbose'"),
    (b'{"cmd":"focus","roi":[1,2,3]}', "'roi' must be [x, y, w, h]"),
    (b'{"cmd":"focus","roi":[1,2,3.5,4]}', "'roi' must be [x, y, w, h]"),
    (b'{"cmd":"focus","roi":[1,2,true,4]}', "'roi' must be [x, y, w, h]"),
    (b'{"cmd":"focus","roi":[-1,2,3,4]}', "needs x, y >= 0"),
    (b'{"cmd":"focus","roi":[1,2,0,4]}', "w, h > 0"),
    (b'{"cmd":"focus","method":"magic"}', "unknown method 'magic'"),
    (b'{"cmd":"mode"}', "'mode' must be one of"),
    (b'{"cmd":"mode","mode":"auto"}', "got 'auto'"),
    (b'{"cmd":"move"}', "'position' must be a finite number"),
    (b'{"cmd":"move","position":"500"}', "'position' must be a finite number"),
    (b'{"cmd":"move","position":true}', "'position' must be a finite number"),
    (b'{"cmd":"move","position":NaN}', "NaN is not a valid JSON number"),
    (b'{"cmd":"move","position":-Infinity}', "-Infinity is not a valid JSON number"),
    (b'{"cmd":"move","position":1' + b"0" * 400 + b"}", "'position' must be a finite number"),
    (b'{"cmd":"status","id":[1]}', "'id' must be"),
    (b"[" * 50_000 + b"]" * 50_000, "too long"),
    (b"[" * 30_000, "nested too deeply"),
    (b"[" * 10, "not valid JSON"),
    (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
])
def test_bad_requests_name_what_was_wrong(line, fragment):
    with pytest.raises(ProtocolError) as ei:
        parse_request(line)
    assert isinstance(ei.value, BadInput)
    assert fragment in str(ei.value)


def test_error_keeps_the_request_id():
    with pytest.raises(ProtocolError) as ei:
        parse_request(b'{"cmd":"mode","mode":"x","id":42}')
    assert ei.value.request_id == 42


def test_line_limit_is_inclusive():
    pad = MAX_LINE_BYTES - len(b'{"cmd":"status","id":""}')
    line = b'{"cmd":"status","id":"' + b"x" * 0 + b'"}' + b" " * pad
    assert len(line) == MAX_LINE_BYTES
    assert parse_request(line).cmd == "status"
    with pytest.raises(ProtocolError, match="too long"):
        parse_request(line + b" ")


def test_replies_encode_as_one_json_line():
    req = Request("focus", id="r1")
    line = encode_reply(ok_reply(req, state=AFState.FOCUSED, position=np.float32(512.0),
                                 slice_index=np.int64(3), dioptres=None, confidence=float("nan"),
                                 trace=np.arange(3)))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    obj = json.loads(line)
    assert obj == {"ok": True, "id": "r1", "state": "Focused", "position": 512.0, "slice_index": 3,
                   "dioptres": None, "confidence": None, "trace": [0, 1, 2]}
    err = json.loads(encode_reply(error_reply("bad\nthing", 5)))
    assert err == {"ok": False, "id": 5, "error": "bad thing"}
