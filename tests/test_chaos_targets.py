"""chaos.targets reads the plan's figures from docs/TARGETS.md and rejects a malformed table."""

from __future__ import annotations

import pytest

from chaos.targets import TargetsFileError, parse_targets, plan_targets, plan_value

HEADER = "| # | id | value | unit | rule | target in the plan |\n|---|---|---|---|---|---|\n"


def _table(*rows: str) -> str:
    """A targets file with every plan target 1..16 present, plus rows."""
    filler = "".join(f"| {n} | t{n} | {n} | s | < | target {n} |\n" for n in range(1, 17))
    return "# targets\n\n" + HEADER + filler + "".join(rows) + "\nafter the table\n"


def test_repository_file_holds_the_plan_values() -> None:
    """The figures the plan states (the plan's list of targets, monitoring row included)."""
    t = plan_targets()
    assert {x.number for x in t.values()} == set(range(1, 17))
    expected = {
        "slow_query_alert_ms": 500,
        "pool_alert_utilisation": 0.80,
        "pool_max": 21,
        "expired_keys_alert": 500,
        "latency_p95_ms": 200,
        "latency_p99_ms": 500,
        "rto_s": 600,
        "rpo_s": 3600,
        "cache_ttl_s": 300,
        "mttd_s": 60,
        "mttr_s": 600,
        "restore_s": 1800,
        "retention_daily": 30,
        "retention_monthly": 12,
        "backup_regions": 2,
    }
    assert {k: t[k].value for k in expected} == expected
    assert t["pool_max"].count == 21 and t["slow_query_alert_ms"].rule == ">"


def test_parse_reads_rows_until_the_table_ends() -> None:
    t = parse_targets(_table("| 8 | pool_max | 21 | connections | = | Pool max 21 |\n"))
    assert t["pool_max"].value == 21 and t["pool_max"].text == "Pool max 21" and len(t) == 17


@pytest.mark.parametrize(
    ("row", "message"),
    [
        pytest.param("| 7 | t7 | 1 | s | < | again |\n", "duplicate target id 't7'", id="duplicate"),
        pytest.param("| 7 | x | fast | s | < | words |\n", "must be numbers", id="value-not-number"),
        pytest.param("| 7 | x | 1 | s | <= | rule |\n", "rule '<=' is not one of", id="bad-rule"),
        pytest.param("| 17 | x | 1 | s | < | beyond |\n", "out of range", id="number-out-of-range"),
        pytest.param("| 7 | x | 1 | s | < |\n", "expected 6 cells", id="short-row"),
        pytest.param("| 7 | a-b | 1 | s | < | id |\n", "snake_case identifier", id="bad-id"),
    ],
)
def test_parse_rejects_a_malformed_row(row: str, message: str) -> None:
    with pytest.raises(TargetsFileError, match=message):
        parse_targets(_table(row))


def test_parse_rejects_a_missing_plan_target() -> None:
    text = _table().replace("| 9 | t9 | 9 | s | < | target 9 |\n", "")
    with pytest.raises(TargetsFileError, match=r"no row for plan target\(s\) \[9\]"):
        parse_targets(text)


def test_unknown_id_names_the_valid_ones() -> None:
    with pytest.raises(KeyError, match=r"valid ids: .*pool_max"):
        plan_value("pool_maximum")
    assert plan_value("expired_keys_alert") == 500
