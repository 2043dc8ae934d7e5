"""The daemon's focus request takes timeout, range and start (issue 13)."""

from __future__ import annotations

import pytest

from hil_af.clock import SimClock
from hil_af.daemon.protocol import ProtocolError, Request, parse_request
from hil_af.drivers.registry import open_rig
from _fault_rigs import service


def test_parse_focus_options():
    r = parse_request(b'{"cmd": "focus", "timeout": 1.5, "range": "near", "start": 700, "method": "cdaf-fast"}')
    assert (r.timeout, r.range, r.start, r.method) == (1.5, "near", 700.0, "cdaf-fast")
    assert parse_request('{"cmd": "focus"}') == Request("focus")


@pytest.mark.parametrize("line,msg", [
    ('{"cmd": "focus", "timeout": 0}', "'timeout'"),
    ('{"cmd": "focus", "timeout": "1"}', "'timeout'"),
    ('{"cmd": "focus", "range": "far"}', "'range'"),
    ('{"cmd": "focus", "start": null, "range": 3}', "'range'"),
    ('{"cmd": "focus", "start": "middle"}', "'start'"),
])
def test_bad_focus_options_are_rejected(line, msg):
    with pytest.raises(ProtocolError, match=msg):
        parse_request(line)


def test_service_focus_honours_start_timeout_and_range():
    with open_rig("sim://?seed=4", clock=SimClock()) as rig:
        svc = service(rig, method="cdaf-fast")
        try:
            ok = svc.handle(Request("focus", start=820.0, range="normal"))
            assert ok["ok"] and ok["state"] == "Focused" and 100 <= ok["position"] <= 900
            late = svc.handle(Request("focus", timeout=0.05))
            assert not late["ok"] and "time budget exceeded" in late["error"]
            bad = svc.handle(Request("focus", start=5000.0))
            assert not bad["ok"] and "outside the lens range" in bad["error"]
        finally:
            svc.close()
