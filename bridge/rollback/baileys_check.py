"""Ask the pinned Baileys itself (Node, compat/verify_folder.js) what it sees in a folder, and check it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bridge.errors import RollbackError
from bridge.rollback import folder as fs
from bridge.rollback.db import connect, database_error
from bridge.rollback.manifest import read_run_manifest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VERIFY_SCRIPT = PROJECT_ROOT / "compat" / "verify_folder.js"
BAILEYS_PACKAGE = PROJECT_ROOT / "node_modules" / "@whiskeysockets" / "baileys" / "package.json"
DEFAULT_TIMEOUT_S = 300.0


class BaileysCheckError(RollbackError):
    """Baileys could not load a folder as expected; `problems` lists each finding (never key material)."""

    def __init__(self, message: str, *, folder: Path, problems: list[str]) -> None:
        super().__init__(message)
        self.folder = folder
        self.problems = problems


@dataclass
class BaileysReport:
    """What Baileys found in one folder: keys per type, and problems (empty when it is good)."""

    folder: Path
    counts: dict[str, int]
    problems: list[str] = field(default_factory=list)
    creds: dict[str, Any] | None = None  # canonical view, only from baileys_view()
    keys: dict[tuple[str, str], Any] = field(default_factory=dict)  # (type, id) -> canonical view

    @property
    def ok(self) -> bool:
        """Return True when Baileys found no problem."""
        return not self.problems

    def raise_for_problems(self, what: str) -> None:
        """Raise BaileysCheckError naming the folder and the first problems, if there are any."""
        if self.problems:
            shown = "; ".join(self.problems[:8]) + (" ..." if len(self.problems) > 8 else "")
            raise BaileysCheckError(
                f"{what}: Baileys check of {self.folder} found {len(self.problems)} problem(s): {shown}",
                folder=self.folder,
                problems=self.problems,
            )


def node_command() -> list[str]:
    """Return the node command (BRIDGE_NODE or PATH); fail clearly if it or the pinned Baileys is missing."""
    node = os.environ.get("BRIDGE_NODE") or shutil.which("node")
    if not node:
        raise RollbackError("Baileys check needs Node.js: install node 20 or set BRIDGE_NODE")
    if not BAILEYS_PACKAGE.is_file():
        raise RollbackError(
            f"Baileys check needs the pinned @whiskeysockets/baileys: run npm ci in {PROJECT_ROOT}"
        )
    return [node]


def baileys_view(
    folder: str | Path, *, ids: Iterable[tuple[str, str]] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> BaileysReport:
    """Return what Baileys reads from folder (creds and every key, canonical), validated by libsignal."""
    with tempfile.TemporaryDirectory(prefix="baileys-ids-") as tmp:
        args = []
        if ids is not None:
            ids_path = Path(tmp) / "ids.json"
            ids_path.write_text(json.dumps([list(i) for i in ids]))
            args = ["--ids", str(ids_path)]
        out = _run(Path(folder), args, timeout_s)
    return BaileysReport(
        folder=Path(folder),
        counts=out["counts"],
        problems=out["problems"],
        creds=out["creds"],
        keys={(t, i): v for t, i, v in out["keys"]},
    )


def validate_folder(folder: str | Path, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> BaileysReport:
    """Load folder in Baileys and validate every value; return counts and problems, no key material."""
    out = _run(Path(folder), ["--summary"], timeout_s)
    return BaileysReport(folder=Path(folder), counts=out["counts"], problems=out["problems"])


def compare_with_stored(
    folder: str | Path,
    creds: dict[str, Any],
    keys: Iterable[tuple[str, str, Any]],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> BaileysReport:
    """Compare what Baileys reads from folder with values in stored (jsonb BufferJSON) form."""
    # The expected values are key material: a private 0700 dir, removed however the check ends.
    with tempfile.TemporaryDirectory(prefix="baileys-expected-") as tmp:
        expected = Path(tmp) / "expected.json"
        fs.write_new_file(expected, json.dumps({"creds": creds, "keys": [list(k) for k in keys]}).encode())
        out = _run(Path(folder), ["--expected", str(expected)], timeout_s)
    return BaileysReport(folder=Path(folder), counts=out["counts"], problems=out["problems"])


def compare_with_database(
    dsn: str, company_id: str, folder: str | Path, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> BaileysReport:
    """Compare what Baileys reads from folder with the company's rows in the database now."""
    cid = fs.validate_company_id(company_id)
    with connect(dsn, purpose=f"Baileys check of company {cid}") as conn:
        try:
            row = conn.execute("SELECT creds FROM whatsapp_auth WHERE company_id = %s", (cid,)).fetchone()
            keys = conn.execute(
                "SELECT key_type, key_id, value FROM whatsapp_keys WHERE company_id = %s", (cid,)
            ).fetchall()
        except psycopg.Error as exc:
            raise database_error(exc, dsn, purpose="Baileys check", in_flight_write=False) from exc
    if row is None:
        raise RollbackError(f"Baileys check: no creds row for company {cid!r} in the database")
    return compare_with_stored(folder, row[0], keys, timeout_s=timeout_s)


def check_export_dir(
    export_dir: str | Path, *, dsn: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[BaileysReport]:
    """Load every company folder of an export in Baileys; counts must match the manifest (and the DB)."""
    root = Path(export_dir)
    companies = sorted(read_run_manifest(root)["companies"].items())

    def check(company: tuple[str, dict[str, Any]]) -> BaileysReport:
        cid, entry = company
        if dsn is not None:
            report = compare_with_database(dsn, cid, root / cid, timeout_s=timeout_s)
        else:
            report = validate_folder(root / cid, timeout_s=timeout_s)
        if report.counts != entry.get("counts"):
            report.problems.append(
                f"Baileys read key counts {report.counts}, the manifest says {entry.get('counts')}"
            )
        return report

    # One single-threaded node process per company, as many at once as there are cores.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(check, companies))


def _run(folder: Path, args: list[str], timeout_s: float) -> dict[str, Any]:
    """Run verify_folder.js from the project root; return its JSON; exit 1 means problems, not failure."""
    cmd = [*node_command(), str(VERIFY_SCRIPT), str(folder), *args]
    try:
        proc = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise RollbackError(f"Baileys check of {folder} did not finish within {timeout_s:g} s") from None
    if proc.returncode not in (0, 1):
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise RollbackError(f"Baileys check of {folder} failed (exit {proc.returncode}): {' | '.join(tail)}")
    try:
        result: dict[str, Any] = json.loads(proc.stdout)
    except ValueError as exc:
        raise RollbackError(f"Baileys check of {folder} printed no JSON result ({exc})") from exc
    return result
