"""The buffers and requests of the fake ``picamera2`` module (``fake_picamera2``), after picamera2's
``request.py`` (``CompletedRequest.make_array``, ``make_buffer``, ``release``, ``MappedArray``,
``_MappedBuffer``) and allocators (``allocators/dmaallocator.py`` ``DmaAllocator``/``DmaSync``,
``allocators/allocator.py`` ``Sync``).

What the real code does, and this model with it: ``MappedArray(request,
"raw")`` maps the camera buffer *without copying* (``.array``: a uint8
``[height, stride]`` view of the mmap, ``helpers._make_array_shared``;
``reshape=False``: the flat buffer); ``make_array("raw")`` is ``np.copy`` of
that view (a copy of the whole buffer, so that it may outlive the request)
and ``make_buffer`` a flat ``np.array`` copy.  A view is valid only inside
its context: the legacy allocator (``Sync``) maps the buffer per access and
unmaps it at exit, where ``mmap.close()`` raises ``BufferError`` while a view
of it is alive (``allocator="legacy"`` here); the ``DmaAllocator`` (the
default, ``"dma"``) keeps one mapping per buffer, so nothing fails at exit,
but ``release()`` requeues the buffer and the camera writes a later frame
into it.  After ``release()`` the request's ``config`` and ``stream_map``
are emptied: ``MappedArray`` then raises ``KeyError``,
``make_array``/``make_buffer`` ``RuntimeError("Stream 'raw' is not
defined")``, ``get_metadata`` ``AssertionError``, a second ``release``
``RuntimeError`` (negative ref_count).  Stricter than the real one, by
design: releasing a request while a ``MappedArray`` of it is open raises
``RuntimeError`` (on a Pi the camera would write into the memory being read).
"""

from __future__ import annotations

import mmap
import os
import tempfile
import types
from typing import Any

import numpy as np


def buffer_classes(calls: list, allocator: str = "dma") -> types.SimpleNamespace:
    """``Buffer``, ``Request`` (a ``CompletedRequest``) and ``MappedArray`` classes that record
    ``("make_array"|"make_buffer"|"map", name)`` in ``calls``; ``allocator``: ``"dma"`` or ``"legacy"``."""
    if allocator not in ("dma", "legacy"):
        raise ValueError(f"allocator must be 'dma' or 'legacy', got {allocator!r}")

    class Buffer:
        """One camera buffer: a memory file (the dmabuf) the camera writes frames into, mapped once
        for good (``DmaAllocator.allocate``: ``mapped_buffers``); ``data`` is that mapping as uint8."""

        def __init__(self, size: int):
            memfd = getattr(os, "memfd_create", None)
            self.file = open(memfd("fake-picamera2"), "r+b", buffering=0) if memfd else tempfile.TemporaryFile()
            self.file.truncate(size)
            self.size = size
            self.mm = mmap.mmap(self.file.fileno(), size)
            self.data = np.frombuffer(self.mm, np.uint8)
            self.image: Any = None          # the image array last written (skip rewriting the same one)
            self.held = False

        def close(self) -> None:
            del self.data
            self.mm.close()
            self.file.close()

    class Request:
        """picamera2 ``CompletedRequest`` (request.py) over one ``Buffer``."""

        def __init__(self, cam: Any, buffer: Buffer, cfg: dict, md: dict):
            self.cam, self.md, self.released = cam, md, False
            self.request: Buffer | None = buffer
            self.config = {"raw": dict(cfg)}
            self.stream_map = {"raw": "raw-stream"}
            self.mapped = 0
            self.ref_count = 1

        def make_buffer(self, name: str) -> np.ndarray:
            """request.py make_buffer: ``np.array`` (a copy) of the whole mapped buffer, flat."""
            calls.append(("make_buffer", name))
            if self.stream_map.get(name) is None:
                raise RuntimeError(f"Stream {name!r} is not defined")
            with _MappedBuffer(self, name, write=False) as b:
                return np.array(b, dtype=np.uint8)

        def make_array(self, name: str) -> np.ndarray:
            """request.py make_array: a copy of MappedArray's [height, stride] view (the whole buffer)."""
            calls.append(("make_array", name))
            if self.config.get(name) is None:
                raise RuntimeError(f"Stream {name!r} is not defined")
            with MappedArray(self, name, _record=False) as m:
                assert m.array is not None  # set on entering the context
                return np.copy(m.array)

        def get_metadata(self) -> dict:
            if self.request is None:
                raise AssertionError("get_metadata after release")  # request.py: assert self.request is not None
            return dict(self.md)

        def release(self) -> None:
            if self.mapped:
                raise RuntimeError("fake picamera2: request released while a MappedArray of it is open "
                                   "(on a Pi the camera would write the next frame into the memory being read)")
            self.ref_count -= 1
            if self.ref_count < 0:
                raise RuntimeError("CompletedRequest: lock now has negative ref_count")
            self.released = True
            self.cam.outstanding -= 1
            assert self.request is not None
            self.request.held = False       # requeued: the camera writes a later frame into it
            self.request = None
            self.config, self.stream_map = {}, {}

    class _MappedBuffer:
        """request.py ``_MappedBuffer``: the buffer's bytes, not a copy.  ``allocator="dma"``: the
        persistent mapping (DmaAllocator; DmaSync only syncs caches); ``"legacy"``: a new mmap of the
        buffer, closed at exit (allocator.py ``Sync``), which raises BufferError while a view lives."""

        def __init__(self, request: Request, stream: str, write: bool = True):
            request.stream_map[stream]      # KeyError after release, as the real one
            assert request.request is not None
            self.request, self.buffer = request, request.request
            self.mm: mmap.mmap | None = None

        def __enter__(self) -> mmap.mmap:
            self.request.mapped += 1
            if allocator == "dma":
                return self.buffer.mm
            self.mm = mmap.mmap(self.buffer.file.fileno(), self.buffer.size)
            return self.mm

        def __exit__(self, exc_type: Any, *exc: Any) -> None:
            self.request.mapped -= 1
            if self.mm is None:
                return
            try:
                self.mm.close()
            except BufferError as e:        # "cannot close exported pointers exist"
                if exc_type is None:        # (not to hide the error a view may be in a traceback of)
                    raise BufferError(f"{e}: a view of the camera buffer outlived its MappedArray context") from None

    class MappedArray:
        """request.py ``MappedArray``: ``.array`` is the buffer itself (uint8 [height, stride] for a
        raw stream, ``helpers._make_array_shared``; flat with ``reshape=False``), valid in the context."""

        def __init__(self, request: Request, stream: str, reshape: bool = True, write: bool = True,
                     _record: bool = True):
            if _record:
                calls.append(("map", stream))
            self._request, self._stream, self._reshape = request, stream, reshape
            self._buffer = _MappedBuffer(request, stream, write=write)
            self._array: np.ndarray | None = None

        def __enter__(self) -> "MappedArray":
            array = np.array(self._buffer.__enter__(), copy=False, dtype=np.uint8)
            if self._reshape:
                cfg = self._request.config[self._stream]
                array = array.reshape(cfg["size"][1], cfg["stride"])
            self._array = array
            return self

        def __exit__(self, *exc: Any) -> None:
            self._array = None
            self._buffer.__exit__(*exc)

        @property
        def array(self) -> np.ndarray | None:
            return self._array

    return types.SimpleNamespace(Buffer=Buffer, Request=Request, MappedArray=MappedArray)
