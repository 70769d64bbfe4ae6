"""Helpers for the rollback tests: Baileys-made folders, chaos.datagen companies as rows, SQL seeding."""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from bridge import codec, fsformat
from bridge.rollback.baileys_check import PROJECT_ROOT, node_command
from chaos import datagen

GENERATE_SCRIPT = PROJECT_ROOT / "compat" / "generate_folder.js"

Row = tuple[str, str, Any]  # (key_type, key_id, value in stored BufferJSON form)


def generate_baileys_folder(folder: Path, **options: int) -> list[tuple[str, str]]:
    """Write a folder with the pinned Baileys (compat/generate_folder.js); return the (type, id) it holds."""
    args = []
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    proc = subprocess.run(
        [*node_command(), str(GENERATE_SCRIPT), str(folder), *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"generate_folder.js failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return [(t, i) for t, i in json.loads(proc.stdout)["ids"]]


def read_folder_rows(folder: Path, ids: list[tuple[str, str]]) -> tuple[dict[str, Any], list[Row]]:
    """Read creds and the given keys from a Baileys folder by their escaped names, in stored form."""
    creds = json.loads((folder / fsformat.CREDS_FILE).read_bytes())
    rows = [(t, i, json.loads((folder / fsformat.file_name(t, i)).read_bytes())) for t, i in ids]
    return creds, rows


def seed_company(admin_dsn: str, company_id: str, creds: dict[str, Any], rows: list[Row]) -> None:
    """Insert (or replace) one company's rows with plain SQL, bypassing the code under test."""
    with psycopg.connect(admin_dsn) as conn, conn.transaction():
        conn.execute("DELETE FROM whatsapp_keys WHERE company_id = %s", (company_id,))
        conn.execute(
            "INSERT INTO whatsapp_auth (company_id, creds) VALUES (%s, %s::jsonb) "
            "ON CONFLICT (company_id) DO UPDATE SET creds = EXCLUDED.creds",
            (company_id, json.dumps(creds)),
        )
        copy_sql = "COPY whatsapp_keys (company_id, key_type, key_id, value) FROM STDIN"
        with conn.cursor().copy(copy_sql) as copy:
            for key_type, key_id, value in rows:
                copy.write_row((company_id, key_type, key_id, json.dumps(value)))


def db_state(dsn: str, company_id: str) -> tuple[Any, dict[tuple[str, str], Any]]:
    """Return a company's creds and keys as the database holds them now."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT creds FROM whatsapp_auth WHERE company_id = %s", (company_id,)).fetchone()
        keys = conn.execute(
            "SELECT key_type, key_id, value FROM whatsapp_keys WHERE company_id = %s", (company_id,)
        ).fetchall()
    return (row[0] if row else None), {(t, i): v for t, i, v in keys}


def folder_json(folder: Path) -> dict[str, Any]:
    """Return every .json file of a folder parsed, by name (order and whitespace do not matter)."""
    return {p.name: json.loads(p.read_bytes()) for p in sorted(folder.iterdir()) if p.suffix == ".json"}


@contextmanager
def mounted_tmpfs(path: Path, *, size: str, read_only: bool = False) -> Iterator[Path]:
    """Mount a private tmpfs at path for the block (needs CAP_SYS_ADMIN); always unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0700" + (",ro" if read_only else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if proc.returncode != 0:
        raise PermissionError(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True, capture_output=True)


# --- synthetic companies, in stored form --------------------------------------------------------------


def synthetic_company(seed: int, *, mix: Mapping[str, int]) -> tuple[dict[str, Any], list[Row]]:
    """chaos.datagen's company for seed with exactly mix keys of each type, in stored BufferJSON form."""
    creds, keys = datagen.make_company_with(random.Random(seed), f"company-{seed}", mix)
    rows = [(t, i, codec.replace(v)) for t, entries in keys.items() for i, v in entries.items()]
    return codec.replace(creds), rows


def differences(left: Any, right: Any, *, limit: int = 20) -> list[str]:
    """Return where two values differ as paths, never the values themselves (they hold key material)."""
    found: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if len(found) >= limit:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=repr):
                if key not in b:
                    found.append(f"{path}[{key!r}] only on the left")
                elif key not in a:
                    found.append(f"{path}[{key!r}] only on the right")
                else:
                    walk(a[key], b[key], f"{path}[{key!r}]")
        elif isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
            for n, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{path}[{n}]")
        elif a != b:
            found.append(f"{path} differs")

    walk(left, right, "$")
    return found
