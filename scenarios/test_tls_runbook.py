"""Claim 1.2 for certificate and credential failures: the runbook's commands tell each one from an outage.

Against a dedicated cluster, each fault of the catalogue (chaos.credential_faults) and the server's TLS
switched off are injected in turn, and the runbook's blocks are run as written (environment.runbook):
``health`` must exit 2 naming the cause on its one line, never the password, and ``tls-check`` must show
what the server presents and refuse exactly the certificate faults. Healed, both exit 0 again.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from psycopg.conninfo import conninfo_to_dict

from bridge.errors import CAUSE_TLS_REFUSED
from chaos.checkers import claim, expect
from chaos.credential_faults import CREDENTIAL_FAULTS, tls_switched_off
from chaos.profiles import Profile
from chaos.toxiproxy import FaultSession, _Undo
from environment.env import Environment
from environment.runbook import PROJECT_ROOT, BlockRun, Runbook, RunbookRunner
from reports.context import DR
from scenarios.tls_support import TLS_STORY, tls_cluster

RUNBOOK = Runbook.load(PROJECT_ROOT / "docs" / "EMERGENCY_RECOVERY_RUNBOOK.md")


def _problems(run: BlockRun, status: int, says: str, password: str) -> list[str]:
    """What is wrong with a block's run: its exit status, a missing cause, a leaked password."""
    out = run.stdout + run.stderr
    problems = (
        [] if run.returncode == status else [f"{run.block.describe()} exited {run.returncode}, not {status}"]
    )
    problems += [] if says in out else [f"{run.block.describe()} does not say {says!r}: {out.strip()[-300:]}"]
    return problems + ([f"{run.block.describe()} printed the password"] if password in out else [])


@pytest.mark.destructive
def test_runbook_names_the_cause_when_certificate_or_credential_fault(
    dr: DR, dr_env: Environment, faults: FaultSession, profile: Profile, request: pytest.FixtureRequest
) -> None:
    cluster = tls_cluster(request)
    ca, password = cluster.tls.ca, dr_env.app_password  # type: ignore[attr-defined]
    runner = RunbookRunner(RUNBOOK, {"BRIDGE_DSN": cluster.auth_db.dsn}, timeout_s=profile.rto_budget_s)
    dr.on_failure_attach("runbook runs", runner.evidence)
    target = "{host}:{port}/{dbname}".format(**conninfo_to_dict(cluster.auth_db.dsn))
    # name: (inject, the cause, tls-check's exit status under it)
    cases: dict[str, tuple[Callable[[], _Undo], str, int]] = {
        name: (
            lambda f=fault: f.inject(faults, cluster, ca, password),  # type: ignore[misc]
            fault.cause,
            0 if name == "password_changed" else 1,
        )
        for name, fault in CREDENTIAL_FAULTS.items()
    }
    cases["tls_off"] = (lambda: tls_switched_off(faults, cluster), CAUSE_TLS_REFUSED, 1)  # type: ignore[arg-type]
    with dr.phase("steady_state", "health and tls-check pass"):
        expect([claim("healthy: both blocks exit 0", _healthy(runner, target, password))])
    for name, (inject, cause, tls_status) in cases.items():
        with dr.phase("inject", f"{name}: health and tls-check run as the runbook says"):
            entry = inject()
            try:
                problems = _problems(runner.run("health"), 2, cause, password)
                tls_says = "verify-full with" if tls_status == 0 else cause.split(" (")[0]
                problems += _problems(runner.run("tls-check"), tls_status, tls_says, password)
                expect([claim(f"the runbook's commands name the cause of {name}", problems)])
            finally:
                faults.heal_entry(entry)
        with dr.phase("recover", f"{name} undone: both blocks pass again"):
            expect([claim(f"healthy again after {name}", _healthy(runner, target, password))])
    ran = {r.block.id for r in runner.runs}
    expect([claim("this story ran every block it owns", [b for b in TLS_STORY if b not in ran])])


def _healthy(runner: RunbookRunner, target: str, password: str) -> list[str]:
    """Both blocks of the story pass against the healthy server."""
    return _problems(runner.run("health"), 0, "", password) + _problems(
        runner.run("tls-check"), 0, f"{target}: verify-full with", password
    )
