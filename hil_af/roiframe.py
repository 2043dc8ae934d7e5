"""A frame of which only windows were decoded: the per-frame budget of an AF step.

An AF step reads a dozen small RoIs, yet ``DualPixelFrame`` holds the whole
view plane (a 12 MP RAW10 frame takes tens of milliseconds to decode whole,
several times that on a Pi 4).  A source that can decode windows alone
(``Picamera2Source.capture_roi_frame``, through ``hil_af.rawroi``) returns a
``RoiFrame`` instead: the raw buffer of one request, the RoIs the controller
asked for decoded at capture, and any other window decoded from the same
buffer when an estimator asks for it (PDAF's wider second look, contrast
search's grown fallback windows), each window at most once.

Coordinates: windows are (x, y, w, h) in pixels of the full view plane of
size ``sensor_hw`` (``origin`` is (0, 0): the frame is the whole plane,
decoded where asked), so the RoI-PE planes and the PDAF per-position
calibration see the RoIs' true positions.  Values: float32 DN with the black
level subtracted, the same patches a whole-frame decode followed by a crop
gives.  ``white_level``, ``lens_position`` (native units), ``timestamp_s``
(seconds) and ``metadata`` mean what they mean on a ``DualPixelFrame``.

Estimators take either kind of frame through ``patches(rois)`` (both
classes) and ``crop(roi)``; ``left``/``right`` exist only on a
``DualPixelFrame``, so code that needs the whole plane fails loudly here.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .errors import BadInput
from .frames import validate_rois

# windows (x, y, w, h) int [P, 4] of one size -> (left, right) float32 [P, h, w], black subtracted
WindowDecoder = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _key(roi: Any) -> tuple[int, int, int, int]:
    x, y, w, h = (int(v) for v in roi)
    return x, y, w, h


def _keys(rois: np.ndarray) -> list[tuple[int, int, int, int]]:
    """``_key`` of each row of validated RoIs int [P, 4]."""
    return [(x, y, w, h) for x, y, w, h in rois.tolist()]


class RoiFrame:
    """One capture decoded only where asked (module doc).

    decode: ``WindowDecoder`` over this capture's raw buffer.  rois: int [P, 4],
    the windows decoded at once (the capture's RoIs).  sensor_hw: (H, W) of the
    full view plane, pixels.  ``decoded_px``: view pixels decoded so far.
    """

    origin = (0, 0)

    def __init__(self, decode: WindowDecoder, rois: Any, sensor_hw: tuple[int, int], *,
                 lens_position: float = float("nan"), timestamp_s: float = 0.0, white_level: float | None = None,
                 metadata: dict[str, Any] | None = None):
        self._decode = decode
        self.sensor_hw = (int(sensor_hw[0]), int(sensor_hw[1]))
        self.lens_position = float(lens_position)
        self.timestamp_s = float(timestamp_s)
        self.white_level = white_level
        self.metadata = dict(metadata or {})
        self._cache: dict[tuple[int, int, int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.decoded_px = 0
        self.rois = validate_rois(rois, self.sensor_hw, "capture RoIs")
        batches = self._ensure(self.rois)
        keys = _keys(self.rois)
        # the capture's RoIs decoded in one call, in their order: ``patches`` of them is that batch
        self._batch = next(((L, R) for k, L, R in batches if k == keys), None)
        self._batch_keys = keys

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the plane the windows are given on, pixels (= ``sensor_hw``)."""
        return self.sensor_hw

    def ensure(self, rois: Any) -> None:
        """Decode the windows of ``rois`` not decoded yet: one decoder call per window size."""
        self._ensure(validate_rois(rois, self.sensor_hw, "RoI"))

    def _ensure(self, rois: np.ndarray) -> list[tuple[list[tuple[int, int, int, int]], np.ndarray, np.ndarray]]:
        """``ensure`` of validated RoIs; the decoder calls made, as (window keys, L, R) batches (read-only)."""
        groups: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
        for k in _keys(rois):
            if k not in self._cache and k not in groups.get((k[2], k[3]), []):
                groups.setdefault((k[2], k[3]), []).append(k)
        batches = []
        for (w, h), keys in groups.items():
            L, R = self._decode(np.array(keys, dtype=np.int64))
            if L.shape != (len(keys), h, w) or R.shape != L.shape:
                raise BadInput(f"window decoder gave {L.shape}/{R.shape} for {len(keys)} windows of {w}x{h}")
            L.flags.writeable = R.flags.writeable = False  # handed out to every estimator: nobody writes
            for i, k in enumerate(keys):
                self._cache[k] = (L[i], R[i])
            self.decoded_px += len(keys) * w * h
            batches.append((keys, L, R))
        return batches

    def patches(self, rois: Any) -> tuple[np.ndarray, np.ndarray]:
        """Left and right patches float32 [P, h, w] of RoIs (x, y, w, h) of one size (read-only)."""
        rois = validate_rois(rois, self.sensor_hw, "RoI")
        if len({(int(w), int(h)) for w, h in rois[:, 2:]}) > 1:
            raise BadInput("RoiFrame.patches needs RoIs of one size")
        keys = _keys(rois)
        if self._batch is not None and keys == self._batch_keys:
            return self._batch
        self._ensure(rois)
        pairs = [self._cache[k] for k in keys]
        L, R = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
        L.flags.writeable = R.flags.writeable = False
        return L, R

    def crop(self, roi: Any) -> tuple[np.ndarray, np.ndarray]:
        """Left and right patches [h, w] of one RoI (x, y, w, h), as ``DualPixelFrame.crop``."""
        self.ensure(np.asarray(roi).reshape(1, 4))
        return self._cache[_key(roi)]

    def roi_views(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The patches of the capture's own RoIs (``rois``), left and right lists of [h, w]."""
        pairs = [self._cache[k] for k in self._batch_keys]
        return [p[0] for p in pairs], [p[1] for p in pairs]
