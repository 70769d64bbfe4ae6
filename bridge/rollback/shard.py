"""Shards of an export: a deterministic split of companies, so N hosts can each export one part."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from bridge.errors import InvalidInputError

MAX_SHARDS = 1024


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (1-based): the companies whose id hashes to it."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, company_id: str) -> bool:
        """Return True if company_id belongs to this shard; depends on the id alone, never on the fleet."""
        digest = hashlib.sha256(company_id.encode("utf-8", "surrogatepass")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1


def parse_shard(text: str) -> Shard:
    """Parse 'I/N' (1 <= I <= N <= MAX_SHARDS); a bad value raises InvalidInputError saying why."""
    parts = text.split("/")
    try:
        index, count = (int(p) for p in parts) if len(parts) == 2 else (0, 0)
    except ValueError:
        index = count = 0
    if not 1 <= index <= count <= MAX_SHARDS:
        raise InvalidInputError(
            f"--shard must be I/N with 1 <= I <= N <= {MAX_SHARDS} (e.g. 2/4), got {text!r}",
            field="shard",
            where=text,
        )
    return Shard(index, count)
