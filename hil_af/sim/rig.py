"""``sim://``: the simulated dual-pixel camera + VCM, a whole Rig.

URL grammar::

    sim://?seed=N&scene=NAME&profile=PROFILE&depth_m=D&noise=S&size=HxW
          &fault_stall=P&fault_frame=KIND&fault_p=P

seed         int, default 0: scene, noise and fault generators (deterministic).
scene        cards (default) | chart | white | flat-centre | dark | natural (hil_af.sim.scene.SCENES).
profile      rig profile name or TOML path (hil_af.profiles.load_profile); its
             [sim] table holds the parameters (hil_af.sim.params.SimParams),
             a [sim_family] table makes each seed a different camera (hil_af.sim.family),
             [lens_map] the code <-> dioptre map.  Default: the profile passed by
             open_rig when it has a [sim] table, else ``sim-default``.
depth_m      metres, depth of the ``chart`` / ``white`` plane (default 1.0).
noise        scale on shot + read noise (default 1; 0 = noise-free but still quantised).
size         HxW, the views' height and width in px (default: the profile's [sim] height, width;
             32..2048 each).  The scene keeps its 3 x 4 cards, so a larger view has larger cards:
             what a model with a larger input needs (RoIs inside one card).
fault_stall  probability that a lens move stalls short of its target (default 0).
fault_frame  black | saturated | flat | timeout: what a faulty capture gives
             (``timeout`` raises hil_af.errors.DeviceTimeout) ...
fault_p      ... with this probability per capture (default 0).

Any other query key is BadInput.  The clock is ``ctx["clock"]`` (pass a
``SimClock`` for faster-than-real-time, deterministic runs).  The Rig has
``truth(rois)`` (in-focus DAC codes per RoI, float64 [P]) and
``change_scene(i)`` (seeded cards scene i, returns its label); the camera is
``rig.source`` (``set_scene``, ``render``, ``truth_dioptres``), the VCM
``rig.lens`` (``actual_position``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..drivers.base import Rig
from ..drivers.registry import DriverURL, register
from ..errors import BadInput
from ..optics import LensMap
from ..paths import REPO_ROOT
from ..profiles import load_profile
from ..text import int_pair
from .camera import FAULT_FRAMES, SimCamera
from .lens import SimLens
from .params import MAX_SIDE_PX, SimParams
from .scene import SCENES

ALLOWED_KEYS = {"seed", "scene", "profile", "depth_m", "noise", "size", "fault_stall", "fault_frame", "fault_p"}
DEFAULT_PROFILE = "sim-default"
DEFAULT_LENS_MAP = LensMap((0.0, 12.0), (100.0, 900.0))


def _prob(url: DriverURL, key: str) -> float:
    v = url.get(key, 0.0, float)
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise BadInput(f"{url.raw}: {key}={v} must be a probability in [0, 1]")
    return v


def _size(url: DriverURL) -> tuple[int, int] | None:
    """The ``size=HxW`` key as (height, width) px, None when absent; BadInput when malformed."""
    v = url.get("size", None)
    if v is None:
        return None
    try:
        h, w = int_pair(v)
    except ValueError:
        raise BadInput(f"{url.raw}: size={v!r} must be HxW in px, e.g. 448x672") from None
    if not (32 <= h <= MAX_SIDE_PX and 32 <= w <= MAX_SIDE_PX):
        raise BadInput(f"{url.raw}: size={v!r}: height and width must be in 32..{MAX_SIDE_PX} px")
    return h, w


def _resolve_profile(url: DriverURL, ctx: dict[str, Any]) -> dict[str, Any]:
    if "profile" in url.query:
        return load_profile(url.query["profile"])
    given = ctx.get("profile") or {}
    if "sim" in given:
        return given
    try:
        return load_profile(DEFAULT_PROFILE)
    except BadInput:  # HIL_AF_RIGS points elsewhere: the shipped file, else the built-in defaults
        shipped = REPO_ROOT / "calibration" / "rigs" / f"{DEFAULT_PROFILE}.toml"
        if shipped.exists():
            return load_profile(shipped)
        return {"rig": {"name": DEFAULT_PROFILE, "source": "sim://"}, "lens_map": DEFAULT_LENS_MAP.to_json(),
                "af": {"slices": 49, "range": [100, 900]}, "sim": {}}


def scene_seed(rig_seed: int, i: int) -> int:
    """Seed of cards scene ``i`` of a rig opened with ``seed=rig_seed``."""
    return int(np.random.SeedSequence([int(rig_seed), int(i), 0xC4D5]).generate_state(1)[0])


def open_sim(url: DriverURL, ctx: dict[str, Any]) -> Rig:
    """Open the simulated rig described by ``url`` (see module docstring)."""
    url.unknown_keys(ALLOWED_KEYS)
    seed = url.get("seed", 0, int)
    if seed < 0:
        raise BadInput(f"{url.raw}: seed must be an integer >= 0, got {seed}")
    scene = url.get("scene", "cards")
    if scene not in SCENES:
        raise BadInput(f"{url.raw}: scene={scene!r} is not a sim scene; known: {', '.join(SCENES)}")
    depth_m = url.get("depth_m", None, float)
    if depth_m is not None and not (math.isfinite(depth_m) and depth_m > 0):
        raise BadInput(f"{url.raw}: depth_m={depth_m} must be > 0 metres")
    noise = url.get("noise", 1.0, float)
    if not (math.isfinite(noise) and noise >= 0):
        raise BadInput(f"{url.raw}: noise={noise} must be >= 0")
    fault_stall = _prob(url, "fault_stall")
    fault_frame = url.get("fault_frame", None)
    if fault_frame is not None and fault_frame not in FAULT_FRAMES:
        raise BadInput(f"{url.raw}: fault_frame={fault_frame!r} must be one of {', '.join(FAULT_FRAMES)}")
    fault_p = _prob(url, "fault_p")
    if fault_p > 0 and fault_frame is None:
        raise BadInput(f"{url.raw}: fault_p given without fault_frame ({', '.join(FAULT_FRAMES)})")

    size = _size(url)
    profile = _resolve_profile(url, ctx)
    where = f"{profile.get('_path', 'profile')}: [sim]"
    table = dict(profile.get("sim") or {})
    if size is not None:
        table.update(height=size[0], width=size[1])
    params = SimParams.from_table(table, where)
    lm = profile.get("lens_map")
    lens_map = LensMap(tuple(lm["dioptres"]), tuple(lm["codes"])) if lm else (ctx.get("lens_map") or DEFAULT_LENS_MAP)
    name = profile.get("rig", {}).get("name", DEFAULT_PROFILE)
    if "sim_family" in profile:  # a family of cameras: this seed's camera
        from .family import draw_params

        af = profile.get("af", {"slices": 49, "range": [100, 900]})
        ends = lens_map.to_dioptres(np.asarray(af["range"], dtype=np.float64))
        slice_d = abs(float(ends[1]) - float(ends[0])) / max(int(af["slices"]) - 1, 1)
        params = draw_params(params, profile["sim_family"], seed, slice_d,
                             f"{profile.get('_path', 'profile')}: [sim_family]")
    clock = ctx["clock"]

    lens = SimLens(params, clock, fault_stall=fault_stall, seed=seed)
    cam = SimCamera(params, lens, lens_map, clock, seed=seed, scene=scene, depth_m=depth_m, noise=noise,
                    fault_frame=fault_frame, fault_p=fault_p, name=name)

    def change_scene(i: int) -> str:
        """Put seeded cards scene ``i`` in front of the camera; returns its label ``cards-i``."""
        return cam.set_scene("cards", scene_seed(seed, i), label=f"cards-{int(i)}")

    prof = {k: v for k, v in profile.items()}
    prof.setdefault("af", {"slices": 49, "range": [100, 900]})
    return Rig(source=cam, lens=lens, name=name, lens_map=lens_map, clock=clock, profile=prof,
               truth=cam.truth_codes, change_scene=change_scene)


register("sim", "rig", "simulated dual-pixel camera + VCM (both ends)")(open_sim)
