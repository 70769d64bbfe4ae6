"""Command line: resolve the configuration, run, print the table, write the JSON."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from benchmarks.config import ROWS, get_config
from benchmarks.results import render_table, write_json
from benchmarks.runner import Terminated, run


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; 0 when the table was produced (targets missed included), 2 on bad usage."""
    try:
        config = get_config(argv)
    except ValueError as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 2
    # The pool says "discarding closed connection" for every connection an outage row breaks on purpose.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    selected = ", ".join(f"{n} {ROWS[n]}" for n in config.rows)
    print(f"benchmarks ({config.mode}): rows {selected}", file=sys.stderr, flush=True)
    try:
        rows, document = run(config)
    except (KeyboardInterrupt, Terminated):
        print("benchmarks: interrupted; everything started was stopped and removed", file=sys.stderr)
        return 130
    title = (
        f"DR benchmarks ({config.mode}, {document['duration_s']:.0f} s, "
        f"{document['machine']['cpus']} CPUs, load {document['machine']['load_average_at_end']})"
    )
    table = render_table(rows, title=title)
    document["table"] = table
    print(table)
    path = write_json(config.out_dir, document)
    print(f"JSON: {path}")
    return 0
