"""``cdaf-libcamera``: libcamera's Raspberry Pi contrast scan, frame for frame, as a baseline.

A port of the CDAF path of ``RPiController::Af`` (``src/ipa/rpi/controller/rpi/af.cpp``
and ``af.h`` in raspberrypi/libcamera) in triggered (``AfModeAuto``) mode on a
camera without PDAF: ``startProgrammedScan`` puts the lens at the range's
``focusMin`` and scans up in ``step_coarse`` dioptres (state Coarse2);
``doScan`` stops a pass when the lens reaches ``focusMax`` or the contrast
falls below ``contrast_ratio`` x the pass maximum, fits ``findPeak`` (a
parabola through the best sample and its neighbours), then scans back in
``step_fine`` steps from one fine step beyond the peak for three samples,
and ``Settle`` moves to the fine peak.  Every step waits ``step_frames``
frames for the ISP statistics (the contrast is read on the next frame);
``updateLensPosition`` limits a move to ``max_slew`` dioptres per frame.
The result is Focused when the last frame's contrast is at least
``contrast_ratio`` x the maximum and the scan saw a contrast at most that
(else Failed), as in ``doAF``'s Settle branch.

Numbers default to the IMX708 tuning (``src/ipa/rpi/{vc4,pisp}/data/imx708.json``,
``rpi.af`` ``speeds.normal``); ``LibcameraAfParams.from_tuning`` reads them
from any tuning file.  Not modelled: the PDAF loop and its dropout frames
(a camera without PDAF is tuned with ``pdaf_gain`` 0), and ``skip_frames``
after a camera start or mode switch (a running camera: 0 here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import FocusFailed
from .af_range import DioptreScale


@dataclass
class LibcameraAfParams:
    """rpi.af tunables used by the scan (dioptres, frames)."""

    step_coarse: float = 1.0      # dioptres per coarse step
    step_fine: float = 0.25       # dioptres per fine step (0: no fine pass)
    contrast_ratio: float = 0.75  # a pass ends when contrast < this x its maximum
    step_frames: int = 5          # frames waited after each step
    max_slew: float = 1.5         # dioptres the lens may move per frame
    skip_frames: int = 0          # frames skipped before the scan (libcamera: after start / mode switch)

    @classmethod
    def from_tuning(cls, tuning: dict, speed: str = "normal") -> "LibcameraAfParams":
        """From a libcamera tuning file (version 2.0 ``algorithms`` list) holding ``rpi.af``."""
        af = next(a["rpi.af"] for a in tuning.get("algorithms", []) if "rpi.af" in a)
        sp = af.get("speeds", {}).get(speed, af.get("speeds", {}).get("normal", {}))
        base = cls()
        return cls(step_coarse=float(sp.get("step_coarse", base.step_coarse)),
                   step_fine=float(sp.get("step_fine", base.step_fine)),
                   contrast_ratio=float(sp.get("contrast_ratio", base.contrast_ratio)),
                   step_frames=int(sp.get("step_frames", base.step_frames)),
                   max_slew=float(sp.get("max_slew", base.max_slew)))


def find_peak(data: list[tuple[float, float]], i: int) -> float:
    """libcamera ``Af::findPeak``: parabola vertex through sample ``i`` of (focus, contrast) and its neighbours."""
    f = data[i][0]
    if len(data) >= 3:
        if i == 0:
            i += 1
        elif i + 1 >= len(data):
            i -= 1
        abx = data[i - 1][0] - data[i][0]
        aby = data[i - 1][1] - data[i][1]
        cbx = data[i + 1][0] - data[i][0]
        cby = data[i + 1][1] - data[i][1]
        denom = 2.0 * (aby * cbx - cby * abx)
        if abs(denom) >= 1.0 / 64.0 and denom * abx > 0.0:
            f = (aby * cbx * cbx - cby * abx * abx) / denom
            f = float(np.clip(f, min(abx, cbx), max(abx, cbx))) + data[i][0]
    return f


def run_cdaf_libcamera(session, ctx, rois, weights, params: LibcameraAfParams | None = None):
    """libcamera's coarse + fine scan on ``session`` (settle="frames"); returns a MethodOutcome."""
    from .methods import MethodOutcome

    p = params or getattr(ctx.config, "libcamera", None) or LibcameraAfParams()
    scale = DioptreScale(session.lens_map, session.positions)
    f_min, f_max = sorted(scale.to_dioptres(x) for x in (session.positions[0], session.positions[-1]))
    fsmooth = scale.to_dioptres(session.position)

    def go(ftarget: float) -> None:
        nonlocal fsmooth
        while abs(ftarget - fsmooth) > p.max_slew + 1e-9:  # updateLensPosition: slew limit, one frame per move
            fsmooth += float(np.sign(ftarget - fsmooth)) * p.max_slew
            session.move_to(scale.to_position(fsmooth))
            session.skip_frames(1)
        fsmooth = ftarget
        session.move_to(scale.to_position(ftarget))

    def contrast_at(ftarget: float) -> float:
        go(ftarget)
        session.skip_frames(p.step_frames)
        frame = session.capture()
        with session.compute():
            return float(np.dot(weights, ctx.contrast(frame, rois)))

    session.skip_frames(p.skip_frames)
    state, step, ftarget = "coarse", p.step_coarse, f_min  # startProgrammedScan in AfModeAuto
    data: list[tuple[float, float]] = []
    c_max, c_min, i_max = 0.0, 1e300, 0
    while True:
        c = contrast_at(ftarget)
        if not data or c > c_max:
            c_max, i_max = c, len(data)
        c_min = min(c_min, c)
        data.append((ftarget, c))
        session.trace.append({"t": session.elapsed_s(), "libcamera": state, "dioptres": ftarget, "contrast": c})
        if ((step >= 0 and ftarget >= f_max) or (step <= 0 and ftarget <= f_min)
                or (state == "fine" and len(data) >= 3) or c < p.contrast_ratio * c_max):
            pk = find_peak(data, i_max)
            data = []
            if state == "fine" or p.step_fine <= 0:
                break
            if step >= 0:
                ftarget, step = min(pk + p.step_fine, f_max), -p.step_fine
            else:
                ftarget, step = max(pk - p.step_fine, f_min), p.step_fine
            state = "fine"
        else:
            ftarget = float(np.clip(ftarget + step, f_min, f_max))
    final = contrast_at(float(np.clip(pk, f_min, f_max)))  # Settle: step_frames, then the check
    if not (final >= p.contrast_ratio * c_max and c_min <= p.contrast_ratio * c_max):
        raise FocusFailed(f"no contrast peak (libcamera's check: final contrast {final:.3g}, "
                          f"scan max {c_max:.3g}, min {c_min:.3g}, contrast_ratio {p.contrast_ratio})")
    conf = float(np.clip((c_max / max(c_min, 1e-12) - 1.0) / 2.0, 0.0, 1.0))
    return MethodOutcome(scale.to_position(float(np.clip(pk, f_min, f_max))), conf)
