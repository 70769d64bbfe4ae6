"""Shared by the rollback scenarios: what a Baileys folder holds, judged against the history or the database.

The oracle is independent of the export code: each file is parsed as Baileys' BufferJSON and digested
like the history digests what the workload wrote (chaos.history.digest), so "the same value" means the
same canonical JSON, whatever the key order or Buffer form on disk.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from bridge import codec, fsformat
from chaos import datagen
from chaos.history import CREDS, History, KeyRef, digest
from chaos.workload import AuthStore


def folder_digests(folder: Path) -> dict[KeyRef, str | None]:
    """Digest of each value Baileys would read from folder: creds.json as (creds, ''), keys by (type, id)."""
    out: dict[KeyRef, str | None] = {}
    for path in sorted(folder.iterdir()):
        if path.name == fsformat.CREDS_FILE:
            out[(CREDS, "")] = digest(codec.loads(path.read_bytes()))
        elif path.suffix == ".json":
            out[fsformat.split_file_name(path.name)] = digest(codec.loads(path.read_bytes()))
    return out


def missing_acknowledged(
    history: History, company: str, files: Mapping[KeyRef, str | None]
) -> tuple[list[str], int]:
    """Acknowledged writes the files lack, hold differently or (deletes) still hold; and the count checked.

    Keys that an indeterminate or unfinished write touched may hold either value, so they are not judged.
    """
    acknowledged, uncertain = history.acknowledged_state(company)
    problems: list[str] = []
    checked = 0
    for (key_type, key_id), expected in sorted(acknowledged.items()):
        if (key_type, key_id) in uncertain:
            continue
        checked += 1
        name = f"{company} creds" if key_type == CREDS else f"{company} {key_type} {key_id!r}"
        if expected is None:
            if (key_type, key_id) in files:
                problems.append(f"{name}: deleted (acknowledged) but still in the files")
        elif (key_type, key_id) not in files:
            problems.append(f"{name}: acknowledged but missing from the files")
        elif files[(key_type, key_id)] != expected:
            problems.append(f"{name}: the file holds another value than the last acknowledged write")
    return problems, checked


def differing_keys(
    expected: Mapping[KeyRef, str | None], actual: Mapping[KeyRef, str | None], *, limit: int = 5
) -> list[str]:
    """Keys whose digest differs between two states (missing on either side counts), at most limit of them."""
    absent = "absent"
    diff = [
        f"{key_type} {key_id!r}: expected {expected.get((key_type, key_id), absent)}, "
        f"found {actual.get((key_type, key_id), absent)}"
        for key_type, key_id in sorted(set(expected) | set(actual))
        if expected.get((key_type, key_id), absent) != actual.get((key_type, key_id), absent)
    ]
    return diff[:limit] + ([f"... and {len(diff) - limit} more"] if len(diff) > limit else [])


def seed_companies(
    store: AuthStore, companies: Sequence[str], n_keys: int, *, seed: int, history: History | None = None
) -> dict[str, tuple[dict[str, Any], dict[str, dict[str, Any]]]]:
    """Write a chaos.datagen company per id through store (recorded in history, if given)."""
    seeded = {}
    for n, company in enumerate(companies):
        creds, keys = datagen.make_company(random.Random(seed + n), company, n_keys)
        writes = {
            (key_type, key_id): v for key_type, entries in keys.items() for key_id, v in entries.items()
        }
        with _recorded(history, company, "set_keys", writes):
            store.set_keys(company, keys)
        with _recorded(history, company, "save_creds", {(CREDS, ""): creds}):
            store.save_creds(company, creds)
        seeded[company] = (creds, keys)
    return seeded


def _recorded(
    history: History | None, company: str, call: str, writes: Mapping[KeyRef, Any]
) -> AbstractContextManager[Any]:
    """history.record for a seed write, or nothing (`is not None`: an empty History is falsy)."""
    return history.record(company, "seed", call, writes=writes) if history is not None else nullcontext()
