"""PNG reading for the dataset importers (Pillow, the ``[l2af]`` extra): one-line errors that name the
file and the dataset layout it was expected by; an optional size check made on the header, before any
pixel is decoded, so memory stays bounded whatever a file claims."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import BadInput, FormatError


def read_png(path: Path, dataset: str, hw: tuple[int, int] | None = None) -> np.ndarray:
    """The samples of one PNG (a colour PNG: its first channel); ``hw`` (rows, cols): the size it must have."""
    try:
        from PIL import Image
    except ImportError:
        from .text import install_hint

        raise BadInput(f"reading {dataset} PNGs needs Pillow, the [l2af] extra: {install_hint('l2af')}") from None
    if not path.exists():
        raise FormatError(f"{path}: missing (expected by the {dataset} layout)")
    try:
        with Image.open(path) as im:
            if hw is not None and im.size != (hw[1], hw[0]):
                raise FormatError(f"{path}: {im.size[1]} x {im.size[0]} px, expected {hw[0]} x {hw[1]}")
            a = np.asarray(im)
    except FormatError:
        raise
    except Exception as e:  # Pillow raises many types for broken files
        raise FormatError(f"{path}: not a readable PNG: {e}") from None
    if a.ndim == 3:  # colour PNG: the PD planes / depth are single channel; use the first
        a = a[..., 0]
    return a
