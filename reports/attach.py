"""Allure attachment helpers; every text and JSON body passes through the redactor before it is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import allure
from allure_commons.types import AttachmentType

from reports.redact import redact_data, redact_json_text, redact_text

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TEXT_SUFFIXES = {
    ".txt": AttachmentType.TEXT,
    ".log": AttachmentType.TEXT,
    ".md": AttachmentType.TEXT,
    ".csv": AttachmentType.CSV,
    ".tsv": AttachmentType.TSV,
    ".json": AttachmentType.JSON,
    ".yaml": AttachmentType.YAML,
    ".yml": AttachmentType.YAML,
    ".xml": AttachmentType.XML,
    ".properties": AttachmentType.TEXT,
    ".sql": AttachmentType.TEXT,
    ".conf": AttachmentType.TEXT,
    ".html": AttachmentType.HTML,
    ".sh": AttachmentType.TEXT,
}


def to_json(data: Any) -> str:
    """Redact JSON-like data and serialise it for a person to read."""
    return json.dumps(redact_data(data), indent=2, ensure_ascii=False, sort_keys=False, default=str)


def attach_json(name: str, data: Any) -> str:
    """Attach data as redacted JSON; return the exact body written."""
    body = to_json(data)
    allure.attach(body, name=name, attachment_type=AttachmentType.JSON)
    return body


def attach_text(name: str, text: str | bytes) -> str:
    """Attach text (a log, a command's output) after redaction; return the exact body written."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    body = redact_text(text)
    allure.attach(body, name=name, attachment_type=AttachmentType.TEXT)
    return body


def attach_png(name: str, png: bytes | str | Path) -> None:
    """Attach a PNG image (bytes or a path); refuse anything that is not a PNG."""
    data = Path(png).read_bytes() if isinstance(png, str | Path) else png
    if not data.startswith(PNG_MAGIC):
        raise ValueError(f"attachment {name!r} is not a PNG image (first bytes {data[:8]!r})")
    allure.attach(data, name=name, attachment_type=AttachmentType.PNG)


def attach_file(path: str | Path, name: str | None = None) -> None:
    """Attach a file: text formats are redacted, PNGs pass through, other binaries are refused."""
    path = Path(path)
    name = name or path.name
    suffix = path.suffix.lower()
    if suffix == ".png":
        attach_png(name, path)
        return
    kind = _TEXT_SUFFIXES.get(suffix)
    if kind is None:
        raise ValueError(
            f"cannot attach {path.name}: binary or unknown type {suffix or '(none)'} cannot be redacted; "
            "attach a manifest or a digest of it instead"
        )
    text = path.read_text(encoding="utf-8", errors="replace")
    body = redact_json_text(text) if kind is AttachmentType.JSON else redact_text(text)
    allure.attach(body, name=name, attachment_type=kind)
