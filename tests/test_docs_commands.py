"""The README and docs/*.md, checked as a new user would use them.

1. Every ``hil-af`` command in a fenced code block of README.md or docs/*.md:
   - a synopsis (placeholders such as ``RIG``, ``CAL.json``, ``[--json]``) must
     name a real command and only options that command has;
   - a concrete command is run (in process, through ``hil_af.cli.main``, in a
     scratch folder per document, in document order so that one command's
     output feeds the next), unless it needs a real rig or is on the explicit
     skip list below.  Inputs it names that do not exist are made cheaply
     (a simulated stack, a frame, the example calibrations), and a few cost
     trims (``COST_TRIMS``) keep simulated runs short.
2. Every relative link in README.md and docs/*.md resolves to a file inside the
   repository (and a ``#fragment`` to a heading of a Markdown target).
3. Nothing a user reads (docs, README, ``--help`` texts) points at files a
   clone does not have (``../shared``, ``DESIGN.md``).

The checks are generic: a command added to any doc is checked without editing
this file.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hil_af.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
EXAMPLES = REPO / "calibration" / "examples" / "sim-wide"

# Commands not run, and why (they are still checked as synopses: command and options exist).
SKIP = {
    "train": "trains for minutes to hours of CPU (tests/test_model_train.py runs a small training)",
    "serve": "a daemon that runs until stopped (tests/test_daemon_e2e.py runs it on a simulated rig)",
    "import-l2af": "needs the Learning-to-Autofocus dataset (tests/test_l2af.py converts a synthetic tree)",
    "import-xin": "needs the Xin et al. Pixel 4 release (tests/test_xin_import.py converts a synthetic tree)",
}
NEEDS_RIG = "needs a real rig (a URL or rig profile other than sim:// and replay://)"
# Commands that need an optional extra: skipped, saying so, where it is not installed.
NEEDS_EXTRA = {("calibrate", "report"): ("matplotlib", "report")}
# Exit statuses that are not an error for a command whose outcome depends on the machine.
ACCEPTED_STATUS = {"doctor": {0, 1}}  # doctor exits 1 when this machine lacks a device or an extra
# Trims applied to commands that are run, so the simulated work stays small; they change no meaning.
COST_TRIMS = {
    "clock": "simulated rigs run in virtual time (--clock sim is added where the command has --clock)",
    "scenes": "calibrate capture captures at most 2 scenes",
    "start-stride": "eval uses every 8th start slice (unless the doc gives a stride)",
}

PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_]*(?:\.[a-z]+)?/?|.*[<>\[\]].*|\.\.\.|.*\|.*|X,Y,W,H|W1,W2,\.\.\.)$")
FENCE = re.compile(r"^([ \t]*)(```+|~~~+)[^\n]*\n(.*?)^\1\2[ \t]*$", re.S | re.M)


@dataclass
class DocCommand:
    doc: Path
    line: str
    argv: list[str]
    synopsis: bool
    parser: argparse.ArgumentParser | None = None
    path: list[str] = field(default_factory=list)  # e.g. ["calibrate", "fit"]


def _segments(line: str) -> list[str]:
    """Shell command segments of one line: split at ``&&``, ``||``, ``;``, and at ``|`` and ``&`` standing
    alone between spaces (``a|b`` inside a word is a synopsis alternative); a ``#`` comment is dropped."""
    out, cur, quote = [], "", None
    i = 0
    while i < len(line):
        ch, nxt = line[i], line[i + 1:i + 2]
        prev = cur[-1:] if cur else " "
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and prev.isspace():
            break
        elif ch == ";" or line[i:i + 2] in ("&&", "||") or (ch in "|&" and prev.isspace() and (not nxt or nxt.isspace())):
            out.append(cur)
            cur = ""
            i += 2 if line[i:i + 2] in ("&&", "||") else 1
            continue
        cur += ch
        i += 1
    out.append(cur)
    return [s.strip() for s in out if s.strip()]


def _words(segment: str) -> list[str]:
    try:
        return shlex.split(segment)
    except ValueError:
        return segment.split()


def _resolve(argv: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The (sub)parser a command line reaches and the subcommand path; KeyError for an unknown command."""
    parser = build_parser()
    path: list[str] = []
    for word in argv:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word.startswith("-"):
            break
        if word not in subs[0].choices:
            raise KeyError(" ".join(["hil-af", *path, word]))
        parser = subs[0].choices[word]
        path.append(word)
    return parser, path


def doc_commands() -> list[DocCommand]:
    found = []
    for doc in DOCS:
        for m in FENCE.finditer(doc.read_text(encoding="utf-8")):
            for line in m.group(3).replace("\\\n", " ").splitlines():
                for seg in _segments(line):
                    words = _words(seg)
                    while words and (words[0] == "sudo" or re.match(r"^[A-Z_][A-Z0-9_]*=", words[0])):
                        words = words[1:]
                    if not words or Path(words[0]).name != "hil-af":
                        continue
                    argv = words[1:]
                    synopsis = any(PLACEHOLDER.match(w) for w in argv)
                    found.append(DocCommand(doc, seg, argv, synopsis))
    return found


COMMANDS = doc_commands()


def _id(c: DocCommand) -> str:
    return f"{c.doc.name}:{' '.join(c.argv)[:60]}"


def test_the_docs_hold_commands_of_each_kind():
    # the extraction itself: the README's first command and some synopses are found
    lines = [c.line for c in COMMANDS]
    assert any('hil-af focus "sim://?seed=1" --json' in line for line in lines), lines[:5]
    assert sum(c.synopsis for c in COMMANDS) >= 5 and sum(not c.synopsis for c in COMMANDS) >= 5


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


@pytest.mark.parametrize("cmd", COMMANDS, ids=_id)
def test_doc_command_names_real_commands_and_options(cmd):
    try:
        parser, path = _resolve(cmd.argv)
    except KeyError as e:
        pytest.fail(f"{cmd.doc.name}: `{cmd.line}` names no command {e}")
    opts = _options(parser)
    for w in cmd.argv:
        opt = w.strip("[]").split("=", 1)[0]
        if opt.startswith("--") and re.match(r"^--[a-z0-9][a-z0-9-]*$", opt):
            assert opt in opts, f"{cmd.doc.name}: `{cmd.line}`: {' '.join(['hil-af', *path])} has no option {opt}"


# --------------------------------------------------------------------------- running the concrete ones


def _rig_is_simulated(spec: str) -> bool:
    if "://" in spec:
        return spec.startswith(("sim://", "replay://"))
    from hil_af.profiles import load_profile

    try:
        rig = load_profile(spec)["rig"]
    except Exception:  # noqa: BLE001 - a profile of the reader's own (my-rig.toml) is a real rig
        return False
    return all(str(rig.get(k, "sim://")).startswith(("sim://", "replay://")) for k in ("source", "lens"))


RIG_COMMANDS = {("focus",), ("capture-stack",), ("capture-frame",), ("calibrate", "capture"), ("calibrate", "flatfield"),
                ("serve",), ("doctor",)}


def _positionals(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """The positional words of argv after the subcommand path (options and their values left out)."""
    takes_value = {s for a in parser._actions if a.option_strings and a.nargs != 0 for s in a.option_strings}
    out, skip = [], False
    for w in argv:
        if skip:
            skip = False
        elif w.startswith("-"):
            skip = w in takes_value and "=" not in w
        else:
            out.append(w)
    return out


def skip_reason(cmd: DocCommand) -> str | None:
    if "--help" in cmd.argv or "-h" in cmd.argv or "--version" in cmd.argv:
        return None
    parser, path = _resolve(cmd.argv)
    if path and path[0] in SKIP:
        return SKIP[path[0]]
    if tuple(path) in NEEDS_EXTRA:
        import importlib.util

        module, extra = NEEDS_EXTRA[tuple(path)]
        if importlib.util.find_spec(module) is None:
            return f"needs the [{extra}] extra, not installed here"
    pos = _positionals(cmd.argv, parser)[len(path):]
    if tuple(path) in RIG_COMMANDS and pos and not _rig_is_simulated(pos[0]):
        return NEEDS_RIG
    if "--lens" in cmd.argv and not _rig_is_simulated(cmd.argv[cmd.argv.index("--lens") + 1]):
        return NEEDS_RIG
    return None


@pytest.fixture(scope="session")
def sim_stack(tmp_path_factory) -> Path:
    """One simulated focal stack (49 slices, 12 RoIs, sim-wide: the example calibrations' lens), made once."""
    from hil_af.capture import sweep
    from hil_af.clock import SimClock
    from hil_af.drivers.registry import open_rig
    from hil_af.stacks import save_stack

    path = tmp_path_factory.mktemp("docdata") / "stack.npz"
    with open_rig("sim://?seed=9300&profile=sim-wide", clock=SimClock()) as rig:
        save_stack(path, sweep(rig, progress=False), compressed=False)
    return path


def _make_input(kind: str, dest: Path, sim_stack: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if kind == "stacks":
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(sim_stack, dest / "stack.npz")
    elif kind == "stack":
        shutil.copy(sim_stack, dest)
    elif kind == "frame":
        from hil_af.stacks import load_stack, save_frame

        st = load_stack(sim_stack)
        save_frame(dest, st.frame(st.n // 2), black_level=st.black_level)
    elif kind in ("calibration", "global-calibration"):
        shutil.copy(EXAMPLES / ("cal-global.json" if kind == "global-calibration" else "cal.json"), dest)
        if not (dest.parent / "flat.npz").exists():  # the flat field the example calibrations record, beside them
            shutil.copy(EXAMPLES / "flat.npz", dest.parent / "flat.npz")
    elif kind == "flatfield":
        shutil.copy(EXAMPLES / "flat.npz", dest)


def _inputs(argv: list[str], path: list[str], parser) -> list[tuple[int, str]]:
    """(index in argv, kind) of every word naming an input file or folder."""
    out = []
    as_input = {"--stacks": "stacks", "--calibration": "calibration", "--global-calibration": "global-calibration",
                "--frame": "frame"}
    if path != ["calibrate", "flatfield"]:
        as_input["--flatfield"] = "flatfield"
    for i, w in enumerate(argv[:-1]):
        if w in as_input:
            kind = as_input[w]
            if kind == "calibration" and "glob" in argv[i + 1].lower():
                kind = "global-calibration"
            out.append((i + 1, kind))
    pos = _positionals(argv, parser)[len(path):]
    if pos:
        i = len(argv) - 1 - argv[::-1].index(pos[0])
        if path == ["disparity"]:
            out.append((i, "stack" if "--slice" in argv else "frame"))
        elif path == ["calibrate", "report"]:
            out.append((i, "calibration"))
        elif pos[0].startswith("replay://"):
            out.append((i, "replay"))
    return out


def _trim(argv: list[str], path: list[str], parser) -> list[str]:
    argv = list(argv)
    opts = _options(parser)
    pos = _positionals(argv, parser)[len(path):]
    if "--clock" in opts and "--clock" not in argv and pos and pos[0].startswith("sim://"):
        argv += ["--clock", "sim"]
    if path == ["calibrate", "capture"] and "--scenes" in argv:
        i = argv.index("--scenes") + 1
        argv[i] = str(min(int(argv[i]), 2))
    if path == ["eval"] and "--start-stride" not in argv:
        argv += ["--start-stride", "8"]
    return argv


def _prepare(argv: list[str], path: list[str], parser, sandbox: Path, sim_stack: Path) -> list[str]:
    argv = list(argv)
    for i, kind in _inputs(argv, path, parser):
        word = argv[i]
        if kind == "replay":
            target = word[len("replay://"):]
            if not (sandbox / target).exists() and not (REPO / target).exists():
                _make_input("stack", sandbox / target, sim_stack)
            elif not (sandbox / target).exists():
                argv[i] = f"replay://{REPO / target}"
            continue
        if (sandbox / word).exists():
            continue
        if (REPO / word).exists():  # a path of the repository, as the docs write them
            argv[i] = str(REPO / word)
            continue
        _make_input(kind, sandbox / word, sim_stack)
    return argv


RUNNABLE = [c for c in COMMANDS if not c.synopsis]


_SANDBOXES: dict[Path, Path] = {}  # one scratch folder per document: its commands run in order and share files


@pytest.mark.slow
@pytest.mark.parametrize("cmd", RUNNABLE, ids=_id)
def test_doc_command_runs(cmd, tmp_path_factory, sim_stack, monkeypatch, capsys):
    reason = skip_reason(cmd)
    if reason:
        pytest.skip(f"{cmd.doc.name}: `{cmd.line}`: {reason}")
    parser, path = _resolve(cmd.argv)
    sandbox = _SANDBOXES.setdefault(cmd.doc, tmp_path_factory.mktemp(cmd.doc.stem))
    monkeypatch.chdir(sandbox)
    argv = _prepare(_trim(cmd.argv, path, parser), path, parser, sandbox, sim_stack)
    try:
        status = main(argv)
    except SystemExit as e:  # --help, --version
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    out = capsys.readouterr()
    ok = ACCEPTED_STATUS.get(path[0] if path else "", {0})
    assert status in ok, f"{cmd.doc.name}: `{cmd.line}` (run as hil-af {' '.join(argv)}) exited {status}: {out.err.strip()[-500:]}"
    assert "Traceback" not in out.err


def test_commands_are_skipped_only_for_the_listed_reasons():
    reasons = {skip_reason(c) for c in RUNNABLE} - {None}
    assert all(r in SKIP.values() or r == NEEDS_RIG or r.startswith("needs the [") for r in reasons), reasons
    # the README's first command needs no hardware and is run
    first = next(c for c in RUNNABLE if c.doc.name == "README.md")
    assert skip_reason(first) is None and first.argv[:2] == ["focus", "sim://?seed=1"]


def test_skip_reasons_tell_rigs_from_simulators():
    def cmd(line):
        argv = shlex.split(line)
        return DocCommand(Path("x.md"), line, argv, False)

    assert skip_reason(cmd("focus sim://?seed=1")) is None
    assert skip_reason(cmd("focus sim-wide --json")) is None  # a simulated rig profile
    assert skip_reason(cmd("focus replay://s.npz")) is None
    assert skip_reason(cmd("focus calibration/rigs/pi-2pd-i2c.toml")) == NEEDS_RIG
    assert skip_reason(cmd("calibrate capture my-rig.toml --out s/")) == NEEDS_RIG
    assert skip_reason(cmd("focus sim://?seed=1 --lens i2c://1/0x0c?chip=dw9807")) == NEEDS_RIG
    assert skip_reason(cmd("train --stacks s --out m")) == SKIP["train"]
    assert skip_reason(cmd("train --help")) is None


# --------------------------------------------------------------------------- links and outside references


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    text = FENCE.sub("", md.read_text(encoding="utf-8"))
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, re.M)}


def _links(md: Path) -> list[str]:
    text = FENCE.sub("", md.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    return [m.group(1) for m in LINK.finditer(text)]


def test_slugs_follow_github():
    assert _slug("## `replay://`".lstrip("# ")) == "replay"
    assert _slug("Focal stack file, version 1") == "focal-stack-file-version-1"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves_inside_the_repository(doc):
    bad = []
    for target in _links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, frag = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if REPO not in dest.parents and dest != REPO:
            bad.append(f"{target}: outside the repository")
        elif not dest.exists():
            bad.append(f"{target}: no such file")
        elif frag and dest.suffix == ".md" and frag not in _anchors(dest):
            bad.append(f"{target}: no heading #{frag} in {dest.name}")
    assert not bad, f"{doc.name}: " + "; ".join(bad)


OUTSIDE = re.compile(r"\.\./shared|(?<![\w/])shared/(CLI|focal-stack-format|DESIGN)|DESIGN\.md")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_do_not_point_outside_the_clone(doc):
    hits = [f"{doc.name}:{i}: {line.strip()}" for i, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1)
            if OUTSIDE.search(line)]
    assert not hits, "\n".join(hits)


def test_help_texts_do_not_point_outside_the_clone():
    def walk(parser):
        yield parser.description or ""
        for a in parser._actions:
            yield a.help or ""
            if isinstance(a, argparse._SubParsersAction):
                for sub in a.choices.values():
                    yield from walk(sub)

    texts = list(walk(build_parser()))
    assert len(texts) > 100
    assert not [t for t in texts if OUTSIDE.search(t)]
