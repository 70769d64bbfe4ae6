"""Backup integrity claims for the two regions (a differing replica, a mangled or cut upload): engines.

Each engine runs one claim end to end against the real bridge, PostgreSQL and S3 regions and ends in
``expect``, so a violated claim fails with "DR claim violated: <claim>". The test files stay thin and the
can-fail tests in tests/test_backup_claims_can_fail.py run the same engines against a broken bridge.
Every check of the bridge here is independent of the bridge's own code: objects are read with boto3,
and what was altered is logged by the fault itself.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from bridge.backup.catalog import DATA, MANIFEST, backup_key, list_backups
from bridge.backup.config import BackupConfig
from bridge.backup.create import create_backup
from bridge.backup.errors import BackupError, VerificationError
from bridge.backup.replicate import reconcile, stores_for
from bridge.backup.validate import validate_backup
from chaos.checkers import claim, expect, require_steady
from chaos.profiles import Profile
from chaos.s3_tamper import tampering_region
from chaos.toxiproxy import FaultSession
from environment.env import AuthDatabase, Environment, S3Buckets
from scenarios.backup_support import Evidence, make_config, s3_proxy, scratch_databases, seed

REPLICA_CHECKED = "validation detects a replica region whose data object differs under an identical manifest"
UPLOAD_VERIFIED = (
    "a region that did not store the uploaded bytes is recorded degraded with an alert, never complete"
)
# Cut region-b's upload after this many bytes: far more than the preflight request, far less than a dump.
UPLOAD_CUT_BYTES = 16 * 1024
UPLOAD_FAULTS = ("lying-region", "upload-cut")


@dataclass
class Regions:
    """Direct boto3 access to the fixture buckets, bypassing the bridge (the scenarios' own eyes)."""

    s3_buckets: dict[str, tuple[Any, str]]

    def read(self, region: str, key: str) -> bytes:
        """The object's bytes as the region stores them."""
        endpoint, bucket = self.s3_buckets[region]
        return bytes(endpoint.client().get_object(Bucket=bucket, Key=key)["Body"].read())

    def write(self, region: str, key: str, data: bytes) -> None:
        """Overwrite an object directly in the region."""
        endpoint, bucket = self.s3_buckets[region]
        endpoint.client().put_object(Bucket=bucket, Key=key, Body=data)

    def keys(self, region: str) -> list[str]:
        """Every object key in the region's bucket."""
        endpoint, bucket = self.s3_buckets[region]
        return [o["Key"] for o in endpoint.client().list_objects_v2(Bucket=bucket).get("Contents", [])]


def backup_keys(config: BackupConfig, backup_id: str) -> tuple[str, str]:
    """(data key, manifest key) of a full backup."""
    return (
        backup_key(config.prefix, "full", backup_id, DATA),
        backup_key(config.prefix, "full", backup_id, MANIFEST),
    )


def refusal(run: Any) -> BackupError | None:
    """Run a validation or restore; return the error it raised, None when it accepted the backup."""
    try:
        run()
    except BackupError as exc:
        return exc
    return None


def describe(exc: BackupError | None) -> str:
    """One line for evidence and violations: the error's type, reason and message, or 'accepted'."""
    return "accepted" if exc is None else f"{type(exc).__name__}[{getattr(exc, 'reason', '-')}]: {exc}"


# -- 6a: a replica whose data differs while its manifest is identical ------------------------------------

REPLICA_DAMAGE = {
    "same-length": lambda data: (
        data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0x5A]) + data[len(data) // 2 + 1 :]
    ),
    "shorter": lambda data: data[: len(data) - 4096],
    "longer": lambda data: data + b"\x00" * 4096,
}


def run_replica_divergence(
    request: pytest.FixtureRequest,
    auth_db: AuthDatabase,
    s3_buckets: S3Buckets,
    dr_env: Environment,
    profile: Profile,
    damage: str,
) -> None:
    """Overwrite region-b's data under its manifest: validation must name region-b and the object."""
    ev = Evidence(request)
    admin = dr_env.postgres.superuser_dsn()
    config = make_config(s3_buckets, auth_db.admin_dsn)
    regions = Regions(s3_buckets)
    problems: list[str] = []
    with ev.phase("steady_state", "a backup identical in both regions validates"):
        seed(auth_db.dsn, profile)
        result = create_backup(config)
        data_key, manifest_key = backup_keys(config, result.backup_id)
        first = validate_backup(config, region="region-a", scratch_dsn=admin, record=False)
        require_steady(
            not result.degraded and first.regions == {"region-a": "identical", "region-b": "identical"},
            "a complete backup, identical in both regions",
            first.regions,
        )
        good, manifest_b = regions.read("region-b", data_key), regions.read("region-b", manifest_key)
    with ev.phase("inject", f"region-b's data object overwritten ({damage}), its manifest kept"):
        bad = REPLICA_DAMAGE[damage](good)
        regions.write("region-b", data_key, bad)
        assert regions.read("region-b", data_key) == bad != good
        assert regions.read("region-b", manifest_key) == manifest_b == regions.read("region-a", manifest_key)
    with ev.phase("observe", "validation from region-a checks region-b's bytes, not just its manifest"):
        err = refusal(lambda: validate_backup(config, region="region-a", scratch_dsn=admin, record=False))
        ev.attach("replica-rejection.json", {"refusal": describe(err)})
        if not isinstance(err, VerificationError) or err.reason != "regions_differ":
            problems.append(
                f"region-b holds different data under the same manifest; validation: {describe(err)}"
            )
        elif not any("region-b" in d and data_key in d for d in err.details):
            problems.append(f"regions_differ does not name region-b and {data_key}: {err.details}")
        elif (err.report or {}).get("regions", {}).get("region-b") != "differs":
            problems.append(f"region-b not reported as 'differs': {(err.report or {}).get('regions')}")
        own = refusal(
            lambda: validate_backup(config, region="region-b", scratch_dsn=admin, check_regions=False)
        )
        if not isinstance(own, VerificationError):
            problems.append(f"region-b's own copy validated against its manifest: {describe(own)}")
        if scratch_databases(admin):
            problems.append(f"scratch databases left behind: {scratch_databases(admin)}")
    with ev.phase("heal", "an operator copies region-a's verified object over region-b's"):
        regions.write("region-b", data_key, regions.read("region-a", data_key))
    with ev.phase("recover", "both regions identical again, validated"):
        t0 = time.monotonic()
        report = validate_backup(config, scratch_dsn=admin, record=False)
        seconds = ev.measure("revalidate", time.monotonic() - t0, profile.restore_budget_s, unit="s")
        assert report.regions == {"region-a": "identical", "region-b": "identical"}
        assert seconds <= profile.restore_budget_s, f"revalidation took {seconds:.1f}s"
    expect([claim(REPLICA_CHECKED, problems)])


# -- 6b: a region that acknowledges an upload but stores other bytes, or whose upload is cut -------------


@contextmanager
def _faulty_region_b(fault: str, dr_env: Environment, faults: FaultSession) -> Iterator[tuple[str, Any]]:
    """Yield (region-b URL through the fault, a log of what the fault altered or None)."""
    if fault == "lying-region":
        with tampering_region(dr_env.s3["region-b"].endpoint_url, suffixes=(f"/{DATA}",)) as (url, log):
            yield url, log
    elif fault == "upload-cut":
        with (
            s3_proxy(dr_env, "region-b") as (proxy, url),
            faults.toxic(proxy, "limit_data", stream="upstream", bytes=UPLOAD_CUT_BYTES),
        ):
            yield url, None
    else:
        raise ValueError(f"unknown upload fault {fault!r}; valid: {', '.join(UPLOAD_FAULTS)}")


def run_upload_fault(
    request: pytest.FixtureRequest,
    auth_db: AuthDatabase,
    s3_buckets: S3Buckets,
    dr_env: Environment,
    faults: FaultSession,
    profile: Profile,
    fault: str,
) -> None:
    """A backup while region-b mangles or cuts the upload: degraded there, alert, reconcile repairs it."""
    ev = Evidence(request)
    admin = dr_env.postgres.superuser_dsn()
    direct = make_config(s3_buckets, auth_db.admin_dsn)
    regions = Regions(s3_buckets)
    problems: list[str] = []
    with ev.phase("steady_state", "data seeded, both regions empty and answering"):
        seed(auth_db.dsn, profile)
        left = {region: regions.keys(region) for region in ("region-a", "region-b")}
        require_steady(left == {"region-a": [], "region-b": []}, "both regions empty", left)
    with (
        ev.phase("inject", f"{fault} on region-b during create_backup"),
        _faulty_region_b(fault, dr_env, faults) as (url, log),
    ):
        config = make_config(s3_buckets, auth_db.admin_dsn, key=direct.require_key(), urls={"region-b": url})
        result = create_backup(config)
    ev.attach("upload-fault-backup.json", result.to_dict())
    data_key, manifest_key = backup_keys(config, result.backup_id)
    with ev.phase("observe", "region-b recorded degraded with an alert; nothing there looks complete"):
        if log is not None and not log.altered:
            problems.append("never exercised: the lying region altered no upload")
        if fault == "upload-cut" and result.manifest.encrypted_size <= UPLOAD_CUT_BYTES:
            problems.append("never exercised: the backup is smaller than the cut")
        outcome = {o.region: o for o in result.regions}
        if outcome["region-b"].ok or "region-b" not in result.manifest.degraded_regions:
            stored = regions.read("region-b", data_key) if data_key in regions.keys("region-b") else b""
            problems.append(
                f"region-b recorded complete although it holds {len(stored)} B with SHA256 "
                f"{hashlib.sha256(stored).hexdigest()[:16]}…, the manifest says "
                f"{result.manifest.encrypted_size} B / {result.manifest.encrypted_sha256[:16]}…"
            )
        if not outcome["region-a"].ok:
            problems.append(f"region-a failed too: {outcome['region-a'].error}")
        alerts = [(a.region, a.severity) for a in result.alerts]
        if not outcome["region-b"].ok and alerts != [("region-b", "critical")]:
            problems.append(f"no critical alert for region-b: {[a.to_dict() for a in result.alerts]}")
        if not outcome["region-b"].ok and "region-b" not in (outcome["region-b"].error or ""):
            problems.append(f"region-b's failure does not name the region: {outcome['region-b'].error}")
        complete_b = [
            e.backup_id for e in list_backups(stores_for(direct)[1], direct.prefix, "full") if e.complete
        ]
        if complete_b:
            problems.append(f"region-b lists {complete_b} as complete (manifest written over bad or no data)")
        err = refusal(lambda: validate_backup(direct, region="region-a", scratch_dsn=admin, record=False))
        if not isinstance(err, VerificationError) or err.reason != "regions_differ":
            problems.append(f"validation with region-b short of the backup: {describe(err)}")
    with ev.phase("heal", "the fault is gone"):
        pass  # the inject block has ended: the proxy is closed or its toxic removed
    with ev.phase("recover", "reconcile copies the verified backup to region-b; both validate identical"):
        if not problems:
            rec = reconcile(direct)
            ev.attach("reconcile.json", rec.to_dict())
            report = validate_backup(direct, scratch_dsn=admin, record=False)
            ev.measure("reconcile", rec.seconds, profile.restore_budget_s, unit="s")
            if rec.seconds > profile.restore_budget_s:
                problems.append(f"reconcile took {rec.seconds:.1f}s, over {profile.restore_budget_s:g}s")
            if report.regions != {"region-a": "identical", "region-b": "identical"}:
                problems.append(f"after reconcile the regions are {report.regions}")
            if regions.read("region-b", manifest_key) != regions.read("region-a", manifest_key):
                problems.append("after reconcile region-b's manifest differs from region-a's")
    expect([claim(UPLOAD_VERIFIED, problems)])
