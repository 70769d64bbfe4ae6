"""Detection table: run each break of tests/breaks against its scenario alone (nothing under tests/ is
collected) and show that the scenario fails naming the claim. Writes reports/out/detection.md.

Usage: .venv/bin/python scripts/detection.py [BREAK ...]   (all breaks when none is named)
Exit 0 when every break was caught, 1 when one was not, 2 on a bad break name.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.breaks import Break, catalogue  # noqa: E402

VIOLATION = re.compile(r"^E\s+AssertionError: (DR claim violated: .*)$", re.MULTILINE)


def run_one(found: Break) -> tuple[bool, str, float]:
    """Run the break's scenario against the broken bridge; (caught, first failure line, seconds)."""
    args = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "-p", "tests.breaks"]
    t0 = time.monotonic()
    proc = subprocess.run(
        [*args, f"--dr-break={found.name}", found.scenario], cwd=ROOT, capture_output=True, text=True
    )
    seconds = time.monotonic() - t0
    lines = VIOLATION.findall(proc.stdout)
    first = lines[0] if lines else (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    caught = proc.returncode == 1 and any(found.claim in line for line in lines)
    return caught, first, seconds


def main(names: list[str]) -> int:
    """Run the named breaks (all by default), print and write the table; 0 when all were caught."""
    breaks = catalogue()
    unknown = [n for n in names if n not in breaks]
    if unknown:
        print(f"unknown break(s) {unknown}; valid: {', '.join(sorted(breaks))}", file=sys.stderr)
        return 2
    rows = ["| defect class | break | scenario | caught | first failure line |", "|---|---|---|---|---|"]
    missed = []
    for name in names or sorted(breaks, key=lambda n: (breaks[n].defect, n)):
        found = breaks[name]
        caught, first, seconds = run_one(found)
        print(f"{'caught' if caught else 'MISSED'} {name} ({seconds:.1f} s): {first}", flush=True)
        missed += [] if caught else [name]
        cell = first.replace("|", "\\|")
        rows.append(
            f"| {found.defect} | `{name}` | `{found.scenario}` | {'yes' if caught else '**no**'} | {cell} |"
        )
    out = ROOT / "reports" / "out" / "detection.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(rows) + "\n")
    total = len(rows) - 2
    print(f"\n{total - len(missed)} of {total} breaks caught by the scenarios alone; table: {out}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
