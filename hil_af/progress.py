"""Progress bars that stay out of logs.

``bar(iterable, enabled)`` is ``tqdm`` on stderr, shown only when stderr is a
terminal (``enabled=None``, the default), always (``True``: the command line's
``--progress``) or never (``False``: ``--no-progress``).  A bar written into a
pipe or a journal is a screenful of carriage returns, so the default is to
show none there.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def show(enabled: bool | None = None) -> bool:
    """Whether a bar should be drawn: ``enabled`` when given, else whether stderr is a terminal."""
    if enabled is not None:
        return bool(enabled)
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def bar(iterable: Any = None, enabled: bool | None = None, **tqdm_kwargs: Any):
    """``tqdm(iterable, **tqdm_kwargs)`` on stderr, disabled unless :func:`show` says so.

    Use it as tqdm itself: iterate it, or ``bar(total=n)`` then ``.update()``.
    A ``disable`` keyword is ignored (``enabled`` decides).
    """
    from tqdm import tqdm

    tqdm_kwargs.pop("disable", None)
    tqdm_kwargs.setdefault("file", sys.stderr)
    return tqdm(iterable, disable=not show(enabled), **tqdm_kwargs)


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """``--progress`` / ``--no-progress`` into ``args.progress`` (True / False; None: only on a terminal)."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_const", const=True, default=None,
                   help="show progress bars even when stderr is not a terminal (default: only on a terminal)")
    g.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                   help="no progress bars")
