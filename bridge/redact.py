"""The one redaction scheme: known secret values become one placeholder, in every layer."""

from __future__ import annotations

from collections.abc import Iterable

REDACTED = "[REDACTED]"


def redact_values(text: str, secrets: Iterable[str]) -> str:
    """Replace each secret in text with REDACTED, longest first so that no secret leaves a tail behind."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text
