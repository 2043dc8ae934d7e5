"""URL registry: built-ins, entry-point plugins, errors, rig profiles, the drivers command."""

import json
import sys
import textwrap

import pytest

from hil_af.cli import main
from hil_af.clock import SimClock
from hil_af.drivers import registry
from hil_af.drivers.registry import open_lens, open_rig, open_source, parse_url, schemes
from hil_af.errors import BadInput, UnknownScheme

BUILTIN = {"sim", "replay", "picamera2", "libcamera-lens", "v4l2", "i2c", "serial"}


def test_builtin_schemes_listed_by_drivers_json(capsys):
    assert main(["drivers", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert BUILTIN <= set(out["schemes"])
    assert all(isinstance(v, str) and v for v in out["schemes"].values())


def test_unknown_scheme_lists_known_ones():
    with pytest.raises(UnknownScheme) as e:
        open_rig("warp://1")
    msg = str(e.value)
    assert "'warp'" in msg and "sim" in msg and "i2c" in msg


def test_not_a_url_and_bad_query():
    with pytest.raises(BadInput, match="not a driver URL"):
        parse_url("/dev/i2c-1")
    with pytest.raises(BadInput, match="unknown query parameter"):
        open_rig("sim://?sede=3", clock=SimClock())
    with pytest.raises(BadInput, match="not a valid int"):
        open_rig("sim://?seed=three", clock=SimClock())


def test_kinds_are_checked():
    with pytest.raises(BadInput, match="is a lens URL"):
        open_rig("i2c://1/0x0c?chip=dw9807")
    with pytest.raises(BadInput, match="not a frame source"):
        open_source("i2c://1/0x0c?chip=dw9807")


def test_rig_url_gives_its_parts_and_profile_opens_sim(tmp_path):
    lens = open_lens("sim://?seed=2", clock=SimClock())
    assert lens.range[0] < lens.range[1]
    with open_rig("sim-wide", clock=SimClock()) as rig:
        assert rig.profile["rig"]["name"] == "sim-wide"
        assert rig.lens_map is not None
        assert len(rig.slice_positions()) == 49


def test_bad_profile_names_file_and_rule(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[rig]\nname = 'x'\n")
    with pytest.raises(BadInput, match="bad.toml.*'source'"):
        open_rig(str(bad))
    with pytest.raises(BadInput, match="not found.*known"):
        open_rig("no-such-profile")


def test_entry_point_plugin_is_discovered(tmp_path, monkeypatch):
    (tmp_path / "hilaf_fakeplugin.py").write_text(textwrap.dedent('''
        from hil_af.drivers.registry import DriverEntry
        class Lens:
            range = (0.0, 10.0); settle_time_s = 0.0; position = 0.0
            def move_to(self, p): self.position = p
            def close(self): pass
        ENTRY = DriverEntry("fakelens", "lens", lambda url, ctx: Lens(), "a plugin lens")
    '''))
    dist = tmp_path / "hilaf_fakeplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hilaf-fakeplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[hil_af.drivers]\nfakelens = hilaf_fakeplugin:ENTRY\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_LOADED", False)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    assert schemes()["fakelens"].endswith("a plugin lens")
    lens = open_lens("fakelens://x")
    lens.move_to(3.0)
    assert lens.position == 3.0
    sys.modules.pop("hilaf_fakeplugin", None)


def test_cli_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2
    assert main(["focus", "sim://?seed=1", "--roi", "1,2,3"]) == 2
    assert "X,Y,W,H" in capsys.readouterr().err
    assert main(["focus", "nope://x"]) == 2
