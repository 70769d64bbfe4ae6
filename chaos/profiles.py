"""Run profiles: every time window and data size of a run, scaled together."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Profile:
    """Windows and sizes for one kind of run; scenarios assert relative to these, never to constants."""

    name: str
    cache_ttl_s: float  # credential/key cache TTL (production: 300 s)
    probe_interval_s: float  # health-probe interval
    rto_budget_s: float  # emergency rollback budget (production: 600 s)
    rpo_budget_s: float  # data-loss budget (production: 3600 s)
    restore_budget_s: float  # restore-time budget (production: 1800 s)
    archive_timeout_s: int  # PostgreSQL archive_timeout (production: 3600 s less one upload to both regions)
    statement_timeout_s: float  # bridge statement timeout
    connect_timeout_s: float  # bridge connect timeout
    companies: int  # companies in generated data sets
    keys_per_company: int  # keys per company in generated data sets
    hypothesis_examples: int  # examples for the fault-schedule state machine
    workload_ops_per_s: float  # workload rate per company
    # pytest-xdist workers of the drill: scenarios at real windows mostly sleep, so a wait-bound profile
    # runs more workers than cores, each with its own environment (and destructive ones their own cluster)
    drill_workers: int = 2
    # The fault schedules split into this many scenarios of hypothesis_examples / parts examples each (random
    # and independent outside ci), so that a long profile's schedules run on several workers or shards
    schedule_parts: int = 1

    def scaled(self, factor: float) -> Profile:
        """Return the profile with every time window multiplied by factor (sizes unchanged)."""
        return replace(
            self,
            cache_ttl_s=self.cache_ttl_s * factor,
            probe_interval_s=self.probe_interval_s * factor,
            rto_budget_s=self.rto_budget_s * factor,
            rpo_budget_s=self.rpo_budget_s * factor,
            restore_budget_s=self.restore_budget_s * factor,
            archive_timeout_s=max(1, round(self.archive_timeout_s * factor)),
        )


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci",
        cache_ttl_s=3.0,
        probe_interval_s=0.25,
        rto_budget_s=60.0,
        rpo_budget_s=60.0,
        restore_budget_s=120.0,
        archive_timeout_s=2,
        statement_timeout_s=2.0,
        connect_timeout_s=1.0,
        companies=3,
        keys_per_company=200,
        hypothesis_examples=8,
        workload_ops_per_s=40.0,
    ),
    "nightly": Profile(
        name="nightly",
        cache_ttl_s=10.0,
        probe_interval_s=0.5,
        rto_budget_s=600.0,
        rpo_budget_s=300.0,
        restore_budget_s=1800.0,
        archive_timeout_s=10,
        statement_timeout_s=3.0,
        connect_timeout_s=2.0,
        companies=20,
        keys_per_company=1313,
        hypothesis_examples=60,
        workload_ops_per_s=60.0,
        schedule_parts=2,
    ),
    "quarterly": Profile(
        name="quarterly",
        cache_ttl_s=300.0,
        probe_interval_s=5.0,
        rto_budget_s=600.0,
        rpo_budget_s=3600.0,
        restore_budget_s=1800.0,
        # The RPO of losing the primary is archive_timeout + archiving + shipping to both regions: 3600 s
        # would leave a write of the segment's first second over the hour by the upload (the first quarterly
        # run measured 3599.7 s from the disaster alone). 3540 s leaves a minute for the upload.
        archive_timeout_s=3540,
        statement_timeout_s=5.0,
        connect_timeout_s=5.0,
        companies=20,
        keys_per_company=1313,
        hypothesis_examples=200,
        workload_ops_per_s=20.0,
        # 8 held every claim on 2 cores; 16 starved the CPU-bound scenarios (escalation 10 s late, RTO 1251 s)
        drill_workers=8,
        # 200 examples took over 70 minutes as one scenario, longer than the hour of the PITR floor
        schedule_parts=4,
    ),
}


def get_profile(name: str, *, time_scale: float = 1.0) -> Profile:
    """Return the named profile scaled by time_scale; reject an unknown name and list the valid ones."""
    try:
        profile = PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown DR profile {name!r}; valid profiles: {', '.join(PROFILES)}") from None
    if time_scale <= 0:
        raise ValueError(f"time scale must be positive, got {time_scale}")
    return profile if time_scale == 1.0 else profile.scaled(time_scale)
