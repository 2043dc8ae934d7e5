"""Reading JSON files that may be hostile: bounded size, one-line errors, no tracebacks.

``load_json_file`` refuses anything that is not a regular file (a FIFO would
block), files over ``max_bytes``, text that is not UTF-8, and JSON that does
not parse -- including nesting deeper than Python's recursion limit
(RecursionError) and integers of more than 4300 digits (ValueError) -- with a
``FormatError`` naming the file and the rule.  Memory: the file's bytes, its
text and the parsed object (a few times ``max_bytes`` at most).
"""

from __future__ import annotations

import json
import os
from typing import Any

from .errors import FormatError
from .npzread import read_text_file

MAX_JSON_BYTES = 64 << 20  # 64 MiB: CAL.json with every sample is ~1-5 MB; manifests and cards are KiB


def parse_json_text(text: str, where: str, what: str) -> Any:
    """``json.loads(text)``; FormatError "<where>: not a valid <what>: <why>" on any parse failure."""
    try:
        return json.loads(text)
    except RecursionError:
        raise FormatError(f"{where}: not a valid {what}: JSON nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, "Exceeds the limit (4300 digits) for integer string conversion"
        raise FormatError(f"{where}: not a valid {what}: not JSON ({' '.join(str(e).split())[:200]})") from None


def load_json_file(path: str | os.PathLike, what: str, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The parsed JSON of a regular UTF-8 file of at most ``max_bytes`` bytes (see the module docstring)."""
    return parse_json_text(read_text_file(path, what, max_bytes), str(path), what)
