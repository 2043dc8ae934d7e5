"""Calibration captures: one lens sweep per scene/target, resumable.

``capture_sweeps(rig, out_dir, n_scenes)`` writes ``out_dir/sweep_0000.npz``,
``sweep_0001.npz``, ... (focal stacks, docs/formats.md), each
atomically (``hil_af.stacks.save_stack``: temp file + rename), and after each
one rewrites ``out_dir/manifest.json`` (atomically) with what is done.  A run
killed at any moment therefore leaves finished sweeps, a manifest that lists
some of them, and maybe a temp file ``.sweep_NNNN.npz.tmp-*``; ``resume=True``
removes the temp files, re-validates a finished sweep the manifest does not
list yet (killed between the rename and the manifest write), verifies every
sweep it does list against the size (bytes) and SHA-256 recorded when it was
written (a sweep truncated or replaced since is removed and captured again),
and captures only what is missing: only the sweep in flight is lost.

Scenes: a rig that can change its scene itself (``rig.change_scene(i)``, the
simulator) is asked to; on a real rig the user is asked on stderr to put
target ``i`` in front of the camera (or move the chart to another distance)
and press Enter, unless ``prompt=False``.  Ground truth per RoI is the rig's
truth where known, else the subpixel contrast peak (``hil_af.capture.sweep``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from ..atomic import atomic_write_text, remove_stale_temps
from ..errors import BadInput, FormatError
from ..progress import bar as progress_bar

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "hil-af-calibration-sweeps"


def sweep_name(i: int) -> str:
    return f"sweep_{int(i):04d}.npz"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    """The manifest of ``out_dir`` or None; FormatError naming it if corrupt."""
    p = out_dir / MANIFEST
    if not p.exists():
        return None
    from ..jsonread import load_json_file

    m = load_json_file(p, "sweep manifest")
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT or not isinstance(m.get("done"), dict):
        raise FormatError(f"{p}: not a valid sweep manifest (format {MANIFEST_FORMAT!r} with a 'done' table expected)")

    def count(v: Any, lo: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= 1_000_000

    if m.get("version") != 1 or isinstance(m.get("version"), bool):
        raise FormatError(f"{p}: not a valid sweep manifest: version must be 1, got {m.get('version')!r}")
    if not count(m.get("scenes", 0), 0) or not (m.get("slices") is None or count(m.get("slices"), 2)):
        raise FormatError(f"{p}: not a valid sweep manifest: scenes must be an integer >= 0 and slices null or an integer >= 2")
    if not all(isinstance(k, str) and isinstance(v, dict) for k, v in m["done"].items()):
        raise FormatError(f"{p}: not a valid sweep manifest: 'done' must map file names to objects")
    return m


def _fingerprint(path: Path) -> dict[str, Any]:
    """What the manifest records of a written sweep: its size (bytes) and SHA-256."""
    from .flatfield import file_sha256

    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


def _changed(path: Path, entry: Any) -> str | None:
    """Why a sweep listed as done cannot be kept (missing, not a regular file, size or checksum
    differs from the manifest, or unreadable when the manifest recorded neither), else None."""
    from ..stacks import load_stack
    from .flatfield import file_sha256

    if not path.exists():
        return "listed as done but missing"
    if not path.is_file():
        return "not a regular file"
    if isinstance(entry, dict) and isinstance(entry.get("sha256"), str):
        size = path.stat().st_size
        if size != entry.get("bytes"):
            return f"{size} bytes, the manifest recorded {entry.get('bytes')} (truncated or replaced since written)"
        if file_sha256(path) != entry["sha256"]:
            return "its SHA-256 differs from the manifest's (changed since written)"
        return None
    try:  # a manifest from before checksums were recorded: the file must at least be a valid stack
        load_stack(path)
    except FormatError as e:
        return f"unreadable ({e})"
    return None


def _write_manifest(out_dir: Path, m: dict[str, Any]) -> None:
    m["updated_utc"] = _now()
    atomic_write_text(out_dir / MANIFEST, json.dumps(m, indent=2) + "\n")


def capture_sweeps(rig, out_dir: str | os.PathLike, n_scenes: int, *, n_slices: int | None = None,
                   rois=None, resume: bool = False, prompt: bool = True, progress: bool | None = None,
                   input_fn: Callable[[], str] | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Capture ``n_scenes`` sweeps of ``rig`` into ``out_dir`` (see the module docstring); returns the manifest."""
    from ..capture import sweep
    from ..stacks import load_stack, save_stack

    if not isinstance(n_scenes, int) or n_scenes < 1:
        raise BadInput(f"--scenes must be an integer >= 1, got {n_scenes!r}")
    say = log or (lambda s: print(s, file=sys.stderr, flush=True))
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    man = read_manifest(out)
    existing = sorted(out.glob("sweep_*.npz"))
    if not resume and (man is not None or existing):
        raise BadInput(f"{out} already holds sweeps: add --resume to finish the set, or choose another --out")
    removed = remove_stale_temps(out)
    if removed:
        say(f"removed {len(removed)} unfinished temp file(s) of a killed run: {', '.join(p.name for p in removed)}")
    if man is None:
        man = {"format": MANIFEST_FORMAT, "version": 1, "rig": str(rig.name), "slices": n_slices,
               "scenes": n_scenes, "created_utc": _now(), "done": {}}
    else:
        if man.get("slices") != n_slices:
            raise BadInput(f"{out / MANIFEST}: these sweeps have slices={man.get('slices')}, not {n_slices}: "
                           "resume with the same --slices")
        man["scenes"] = max(int(man.get("scenes", 0)), n_scenes)
    done: dict[str, Any] = man["done"]
    # sweeps renamed into place but not yet in the manifest (killed in between), or listed but gone
    for name in list(done):
        why = _changed(out / name, done[name])
        if why is not None:
            if (out / name).exists():
                say(f"redoing {name}: {why}")
                (out / name).unlink()
            del done[name]
    for p in sorted(out.glob("sweep_*.npz")):
        if p.name not in done:
            try:
                st = load_stack(p)
            except FormatError as e:  # cannot happen with atomic writes, but never keep a bad file
                say(f"removing unreadable {p.name}: {e}")
                p.unlink()
                continue
            done[p.name] = {"scene": st.meta.get("scene"), "gt_source": st.meta.get("gt_source"), "recovered": True,
                            **_fingerprint(p)}
    _write_manifest(out, man)
    todo = [i for i in range(n_scenes) if sweep_name(i) not in done]
    if len(todo) < n_scenes:
        say(f"{n_scenes - len(todo)} of {n_scenes} sweeps already done in {out}")
    ask = input_fn or (lambda: input())
    bar = progress_bar(None, progress, total=n_scenes, initial=n_scenes - len(todo), desc="calibration sweeps", unit="sweep")
    try:
        for i in todo:
            if rig.change_scene is not None:
                label = str(rig.change_scene(i))
            else:
                label = f"target-{i}"
                if prompt:
                    print(f"[{i + 1}/{n_scenes}] put target {i + 1} (or the chart at a new distance) in front of the camera, "
                          "then press Enter", file=sys.stderr, flush=True)
                    try:
                        ask()
                    except EOFError:
                        raise BadInput("no answer on stdin: use --no-prompt to capture without asking") from None
            st = sweep(rig, n_slices, rois=rois, progress=progress, scene=label, source="hil-af calibrate capture")
            save_stack(out / sweep_name(i), st)
            done[sweep_name(i)] = {"scene": label, "gt_source": st.meta.get("gt_source"), "captured_utc": _now(),
                                   **_fingerprint(out / sweep_name(i))}
            _write_manifest(out, man)
            bar.update(1)
    finally:
        bar.close()
    return man
