"""Runbook commands as tests: extract the fenced shell blocks of a Markdown runbook and run them.

A runnable block is a fence whose info string is a shell language followed by ``runbook``, an ``id``
and, optionally, the exit statuses the runbook promises (default 0)::

    ```sh runbook id=export exit=0,3
    python -m bridge rollback export --out "$EXPORT_DIR"
    ```

Each block belongs to the section of the level-1 or level-2 heading above it: the explicit anchor on the
line before that heading (``<a id="roll-back"></a>``) or, without one, the heading's GitHub slug. Inputs
are upper-case variables (``$BRIDGE_DSN``, ``$EXPORT_DIR``); lower-case names are the block's own.

A block runs in ``bash -eu -o pipefail`` from the project root, with a clean environment: only PATH
(this interpreter's bin directory first, so ``python`` is the suite's), HOME, LANG and the variables the
caller gives. A missing input, an exit status the runbook does not promise, or a block still running at
its deadline raises an error naming the block, its section and its line. Values of secret-looking
variables and DSN passwords never appear in what this module returns or raises.

Shell fences without the ``runbook`` tag are listed in ``Runbook.unrun``, so a test can insist there are
none: every shell command in the runbook is one the suite runs.

Operators run blocks the same way, by id, with their own environment (nothing is stripped from it):

    python -m environment.runbook list
    python -m environment.runbook run export verify-export

Exit status: 0 every block exited as the runbook promises, 1 one did not (later ones are not run),
2 an unknown block, a missing input or a malformed runbook.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.redact import redact_values
from chaos.errors import ChaosError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHELL_LANGUAGES = frozenset({"sh", "bash", "shell", "console"})
RUNBOOK_TAG = "runbook"
DEFAULT_RUNBOOK = PROJECT_ROOT / "docs" / "EMERGENCY_RECOVERY_RUNBOOK.md"
DEFAULT_TIMEOUT_S = 300.0
TAIL_LINES = 15

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<text>.+?)\s*#*\s*$")
_ANCHOR = re.compile(r"""<a\s+(?:id|name)=["']([^"']+)["']\s*>\s*</a>""")
_BLOCK_ID = re.compile(r"^[a-z][a-z0-9-]*$")
# An input is an upper-case variable; ${NAME:-x} / ${NAME-x} has a default, so it is optional.
_VAR = re.compile(r"\$(?:\{(?P<braced>[A-Z_][A-Z0-9_]*)(?P<default>:?[-=])?|(?P<bare>[A-Z_][A-Z0-9_]*))")
_ASSIGNED = re.compile(r"^\s*(?:export\s+|local\s+|readonly\s+)?([A-Z_][A-Z0-9_]*)=", re.MULTILINE)
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEY$|^KEY$|TOKEN")
_DSN_PASSWORD = re.compile(r"password\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S+))|://[^:/@\s]+:([^@\s]+)@")


class RunbookError(ChaosError):
    """Root of the runbook errors."""


class RunbookFormatError(RunbookError):
    """The runbook's Markdown breaks the block conventions (no id, a repeated id, a bad exit list)."""

    def __init__(self, message: str, *, source: str, line: int) -> None:
        super().__init__(f"{source}:{line}: {message}")
        self.source = source
        self.line = line


@dataclass(frozen=True)
class RunbookBlock:
    """One runnable fenced block: its id, the section it belongs to, where it is, and its script."""

    id: str
    section: str  # the anchor of its section, e.g. "roll-back"
    heading: str  # the nearest heading's text, for people
    source: str  # the runbook's path or name
    line: int  # 1-based line of the opening fence
    language: str
    script: str
    exits: frozenset[int]

    @property
    def where(self) -> str:
        """'docs/RUNBOOK.md:42 #roll-back' (for messages)."""
        return f"{self.source}:{self.line} #{self.section}"

    @property
    def inputs(self) -> frozenset[str]:
        """Upper-case variables the block reads and does not set itself, and that have no default."""
        assigned = set(_ASSIGNED.findall(self.script))
        needed = set()
        for match in _VAR.finditer(self.script):
            name = match.group("braced") or match.group("bare")
            if match.group("default") is None and name not in assigned:
                needed.add(name)
        return frozenset(needed)

    def describe(self) -> str:
        """Block id and where it is."""
        return f"runbook block {self.id!r} ({self.where})"


@dataclass(frozen=True)
class UnrunBlock:
    """A shell fence without the runbook tag: a command the suite would never run."""

    source: str
    line: int
    section: str
    info: str


@dataclass(frozen=True)
class Runbook:
    """The runnable blocks of one Markdown runbook, in document order, and its section anchors."""

    source: str
    blocks: tuple[RunbookBlock, ...]
    sections: tuple[str, ...]
    unrun: tuple[UnrunBlock, ...] = ()

    @classmethod
    def load(cls, path: str | Path) -> Runbook:
        """Parse the runbook at path (named relative to the project root when it is inside it)."""
        path = Path(path)
        try:
            source = str(path.resolve().relative_to(PROJECT_ROOT))
        except ValueError:
            source = str(path)
        return cls.parse(path.read_text(encoding="utf-8"), source=source)

    @classmethod
    def parse(cls, text: str, *, source: str = "<runbook>") -> Runbook:
        """Extract every runnable block; raise RunbookFormatError on a malformed one."""
        blocks: list[RunbookBlock] = []
        unrun: list[UnrunBlock] = []
        sections: list[str] = []
        section, heading, pending_anchor = "", "", None
        lines = text.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            fence = _FENCE.match(line)
            if fence is None:
                anchor = _ANCHOR.search(line)
                if anchor:
                    pending_anchor = anchor.group(1)
                match = _HEADING.match(line)
                if match:
                    heading = _ANCHOR.sub("", match.group("text")).strip()
                    if len(match.group("hashes")) <= 2:
                        section = pending_anchor or slug(heading)
                        sections.append(section)
                    pending_anchor = None
                i += 1
                continue
            body, end = _fenced_body(lines, i, fence.group("fence"), fence.group("indent"))
            info = fence.group("info").strip()
            words = info.split()
            language = words[0].lower() if words else ""
            if language in SHELL_LANGUAGES:
                if RUNBOOK_TAG in words[1:]:
                    blocks.append(
                        _block(words, body, source=source, line=i + 1, section=section, heading=heading)
                    )
                else:
                    unrun.append(UnrunBlock(source, i + 1, section, info))
            i = end + 1
        seen: dict[str, RunbookBlock] = {}
        for block in blocks:
            if block.id in seen:
                raise RunbookFormatError(
                    f"block id {block.id!r} is used twice (first at line {seen[block.id].line})",
                    source=source,
                    line=block.line,
                )
            seen[block.id] = block
        return cls(source, tuple(blocks), tuple(sections), tuple(unrun))

    def block(self, block_id: str) -> RunbookBlock:
        """The block with this id; the error lists the ids there are."""
        for block in self.blocks:
            if block.id == block_id:
                return block
        raise KeyError(
            f"{self.source} has no runbook block {block_id!r}; blocks: {[b.id for b in self.blocks]}"
        )

    def in_sections(self, *sections: str) -> list[RunbookBlock]:
        """The blocks of the given sections, in document order."""
        return [b for b in self.blocks if b.section in sections]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _fenced_body(lines: list[str], start: int, fence: str, indent: str) -> tuple[str, int]:
    """The text inside the fence opened at start, and the index of its closing line (or the last line)."""
    closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
    body: list[str] = []
    for j in range(start + 1, len(lines)):
        if closing.match(lines[j]):
            return "\n".join(body) + ("\n" if body else ""), j
        # CommonMark: an indented fence strips up to that much indentation from its content lines.
        body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j].lstrip(" "))
    return "\n".join(body) + ("\n" if body else ""), len(lines) - 1


def _block(
    words: list[str], script: str, *, source: str, line: int, section: str, heading: str
) -> RunbookBlock:
    """Build a block from its info string words; refuse a missing or bad id or exit list."""
    attrs: dict[str, str] = {}
    for word in words[1:]:
        if word == RUNBOOK_TAG:
            continue
        key, sep, value = word.partition("=")
        if not sep or key not in ("id", "exit"):
            raise RunbookFormatError(
                f"unknown runbook block attribute {word!r}; use id=NAME and exit=0[,N...]",
                source=source,
                line=line,
            )
        attrs[key] = value
    block_id = attrs.get("id", "")
    if not _BLOCK_ID.match(block_id):
        raise RunbookFormatError(
            f"runbook block needs id=NAME (lower case, digits, hyphens), got {block_id or 'none'!r}",
            source=source,
            line=line,
        )
    try:
        exits = frozenset(int(x) for x in attrs.get("exit", "0").split(","))
    except ValueError:
        raise RunbookFormatError(
            f"block {block_id!r}: exit={attrs['exit']!r} must be comma-separated integers",
            source=source,
            line=line,
        ) from None
    if not script.strip():
        raise RunbookFormatError(f"block {block_id!r} is empty", source=source, line=line)
    if not section:
        raise RunbookFormatError(
            f"block {block_id!r} sits before any section heading", source=source, line=line
        )
    return RunbookBlock(block_id, section, heading, source, line, words[0].lower(), script, exits)


# -- running ----------------------------------------------------------------------------------------


def secrets_of(env: Mapping[str, str]) -> list[str]:
    """Values to hide: secret-looking variables, and the password inside any DSN-looking value."""
    found = {v for k, v in env.items() if _SECRET_NAME.search(k.upper()) and len(v) >= 4}
    for value in env.values():
        for match in _DSN_PASSWORD.finditer(value):
            password = next((g for g in match.groups() if g), None)
            if password and len(password) >= 3:
                found.add(password)
    return sorted(found, key=len, reverse=True)


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


@dataclass
class BlockRun:
    """One run of a block: its exit status, what it printed (redacted) and how long it took."""

    block: RunbookBlock
    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float
    inputs: list[str] = field(default_factory=list)  # names only, never values

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready evidence (already redacted)."""
        return {
            "block": self.block.id,
            "section": self.block.section,
            "where": self.block.where,
            "exit": self.returncode,
            "promised_exits": sorted(self.block.exits),
            "elapsed_s": round(self.elapsed_s, 3),
            "inputs": self.inputs,
            "stdout_tail": _tail(self.stdout),
            "stderr_tail": _tail(self.stderr),
        }


class RunbookEnvError(RunbookError):
    """A block reads an input variable that was not given; nothing was run."""

    def __init__(self, block: RunbookBlock, missing: list[str]) -> None:
        super().__init__(f"{block.describe()} needs {', '.join('$' + m for m in missing)}, which is not set")
        self.block = block
        self.missing = missing


class RunbookCommandFailed(RunbookError):
    """A block exited with a status the runbook does not promise, or did not finish in time."""

    def __init__(self, run: BlockRun, *, timed_out: float | None = None) -> None:
        block = run.block
        if timed_out is not None:
            what = f"did not finish within {timed_out:g} s and was killed"
        else:
            promised = "|".join(map(str, sorted(block.exits)))
            what = f"exited {run.returncode}; the runbook promises exit {promised}"
        parts = [f"{block.describe()} {what}"]
        if run.stderr.strip():
            parts.append("stderr:\n" + _tail(run.stderr))
        if run.stdout.strip():
            parts.append("stdout:\n" + _tail(run.stdout))
        super().__init__("\n".join(parts))
        self.run = run
        self.block = block
        self.returncode = run.returncode
        self.expected = sorted(block.exits)


def base_environment(python: str = sys.executable) -> dict[str, str]:
    """A clean environment: PATH with this interpreter's bin first, HOME, LANG, and a Node override."""
    path = os.pathsep.join([str(Path(python).parent), os.environ.get("PATH", os.defpath)])
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
    for name in ("TMPDIR", "BRIDGE_NODE"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def run_block(
    block: RunbookBlock,
    env: Mapping[str, str],
    *,
    cwd: str | Path = PROJECT_ROOT,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> BlockRun:
    """Run one block with the given inputs; return the run, or raise naming the block."""
    missing = sorted(name for name in block.inputs if not env.get(name))
    if missing:
        raise RunbookEnvError(block, missing)
    full_env = {**base_environment(), **env}
    secrets = secrets_of(env)
    start = time.monotonic()
    proc = subprocess.Popen(
        ["bash", "--noprofile", "--norc", "-e", "-u", "-o", "pipefail", "-c", block.script],
        cwd=cwd,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so a timeout kills every child too
    )
    timed_out: float | None = None
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = timeout_s
        _kill_group(proc)
        out, err = proc.communicate()
    except BaseException:
        _kill_group(proc)
        proc.communicate()
        raise
    run = BlockRun(
        block,
        proc.returncode,
        redact_values(out, secrets),
        redact_values(err, secrets),
        time.monotonic() - start,
        sorted(block.inputs),
    )
    if timed_out is not None or proc.returncode not in block.exits:
        raise RunbookCommandFailed(run, timed_out=timed_out)
    return run


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the block's whole process group (a gone group is fine)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


class RunbookRunner:
    """Runs blocks of one runbook with a shared environment and keeps every run, for evidence and coverage."""

    def __init__(
        self,
        runbook: Runbook,
        env: Mapping[str, str] | None = None,
        *,
        cwd: str | Path = PROJECT_ROOT,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.runbook = runbook
        self.env = dict(env or {})
        self.cwd = cwd
        self.timeout_s = timeout_s
        self.runs: list[BlockRun] = []

    def run(self, block_id: str, **overrides: str) -> BlockRun:
        """Run the block with the shared environment plus overrides; record it; raise if it fails."""
        block = self.runbook.block(block_id)
        try:
            run = run_block(block, {**self.env, **overrides}, cwd=self.cwd, timeout_s=self.timeout_s)
        except RunbookCommandFailed as exc:
            self.runs.append(exc.run)
            raise
        self.runs.append(run)
        return run

    def evidence(self) -> list[dict[str, Any]]:
        """Every run so far, redacted, in order."""
        return [r.to_dict() for r in self.runs]


# -- command line -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """`list` the runnable blocks, or `run` blocks by id with this shell's environment; return the status."""
    parser = argparse.ArgumentParser(
        prog="python -m environment.runbook", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--file", type=Path, default=DEFAULT_RUNBOOK, help="the runbook (default: %(default)s)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the runnable blocks, their section, inputs and promised exits")
    run = sub.add_parser("run", help="run blocks by id, in order, stopping at the first that fails")
    run.add_argument("ids", nargs="+", metavar="ID")
    run.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per block")
    args = parser.parse_args(argv)
    try:
        runbook = Runbook.load(args.file)
        if args.command == "list":
            for b in runbook.blocks:
                exits = ",".join(map(str, sorted(b.exits)))
                print(
                    f"{b.id:<20} #{b.section:<20} exit {exits:<6} needs {' '.join(sorted(b.inputs)) or '-'}"
                )
            return 0
        blocks = [runbook.block(block_id) for block_id in args.ids]
        for block in blocks:
            print(f"== {block.describe()}", file=sys.stderr, flush=True)
            done = run_block(block, dict(os.environ), timeout_s=args.timeout)
            sys.stdout.write(done.stdout)
            sys.stderr.write(done.stderr)
            print(
                f"== {block.id}: exit {done.returncode} ({done.elapsed_s:.1f} s)", file=sys.stderr, flush=True
            )
    except RunbookCommandFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyError as exc:  # an unknown block id; its message lists the ids there are
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    except (RunbookError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
