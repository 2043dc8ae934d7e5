"""One ``Picamera2`` per camera, shared by ``picamera2://N``, ``libcamera-lens://N`` and
``picamera2-fom://N``: libcamera lets only one process-wide owner open a camera.

``shared_camera(N)`` opens camera N on first use (``Picamera2(N)``, imported
lazily: picamera2 exists only on Raspberry Pi OS) and counts references;
``release_camera`` drops one and the last stops and closes the camera.
``SharedCamera`` carries what the users of one camera exchange: the newest
request's metadata (the lens reads its reported position from it), the raw
stream configuration the frame source asked for, the lens's unit conversion
and its commanded target.  ``camera_index`` parses the ``N`` of a URL.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from ..errors import BadInput, DeviceError
from .registry import DriverURL

__all__ = ["SharedCamera", "camera_index", "release_camera", "shared_camera"]


# --------------------------------------------------------------------------- shared camera cache
class SharedCamera:
    """One ``Picamera2`` opened once per camera index and shared by reference count.

    ``last_metadata`` is the metadata of the newest request anyone captured
    (the lens reads its reported position from it); ``raw_config`` is the
    raw stream configuration the frame source asked for (None: the camera
    runs a default video configuration, enough for controls and metadata).
    """

    def __init__(self, index: int):
        try:
            from picamera2 import Picamera2
        except ImportError as e:
            raise DeviceError(
                f"picamera2 is not importable ({e}): on Raspberry Pi OS run 'sudo apt install python3-picamera2' "
                f"and create the venv with --system-site-packages") from None
        self.index = index
        try:
            self.cam = Picamera2(index)
        except (IndexError, RuntimeError) as e:
            raise DeviceError(f"cannot open camera {index} with Picamera2: {e} (is it connected? 'rpicam-hello --list-cameras')") from None
        self.refs = 0
        self.started = False
        self.raw_config: dict[str, Any] | None = None
        self.last_metadata: dict[str, Any] = {}
        # set by libcamera-lens://N?units=code: LensPosition dioptres -> the lens's native units
        self.lens_to_native: Callable[[float], float] | None = None
        self.metadata_seq = 0
        # set by libcamera-lens://N on a move: the LensPosition (dioptres) frames must report
        self.lens_target: float | None = None
        self.lock = threading.RLock()

    def ensure_started(self) -> None:
        with self.lock:
            if not self.started:
                self.cam.configure(self.cam.create_video_configuration())
                self.cam.start()
                self.started = True

    def configure_raw(self, raw: dict[str, Any], controls: dict[str, Any]) -> dict[str, Any]:
        """(Re)configure with a raw stream and start; returns the raw stream's actual configuration."""
        with self.lock:
            if self.started:
                self.cam.stop()
                self.started = False
            # queue=False: no frame is held back, so a capture is never older than the request for it
            cfg = self.cam.create_still_configuration(raw=raw, buffer_count=2, queue=False, controls=controls or {})
            self.cam.configure(cfg)
            self.cam.start()
            self.started = True
            actual = dict(self.cam.camera_configuration()["raw"])
            self.raw_config = actual
            return actual

    def note_metadata(self, md: dict[str, Any]) -> None:
        with self.lock:
            self.last_metadata = dict(md)
            self.metadata_seq += 1


_CAMERAS: dict[int, SharedCamera] = {}
_CAMERAS_LOCK = threading.Lock()


def shared_camera(index: int) -> SharedCamera:
    """Acquire camera ``index`` (opening it on first use); pair with ``release_camera``."""
    with _CAMERAS_LOCK:
        cam = _CAMERAS.get(index)
        if cam is None:
            cam = _CAMERAS[index] = SharedCamera(index)
        cam.refs += 1
        return cam


def release_camera(cam: SharedCamera) -> None:
    """Drop one reference; the last one stops and closes the camera."""
    with _CAMERAS_LOCK:
        cam.refs -= 1
        if cam.refs > 0:
            return
        _CAMERAS.pop(cam.index, None)
    try:
        if cam.started:
            cam.cam.stop()
    finally:
        cam.cam.close()


def camera_index(url: DriverURL) -> int:
    s = url.netloc or url.path.strip("/") or "0"
    if not s.isdigit():
        raise BadInput(f"{url.raw}: camera index {s!r} is not a number (e.g. {url.scheme}://0)")
    return int(s)
