"""Shared glue for the backup scenarios: configs over the fixture buckets, S3 proxies, seeding, evidence."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bridge.backup.config import BackupConfig, BackupKey, S3Target
from bridge.backup.content import ContentSummary, company_digest, summarize
from bridge.store import PgAuthStore
from chaos import datagen
from chaos.profiles import Profile
from environment.env import Environment

# Short S3 timeouts so that a dead or silent region is declared unreachable within seconds.
S3_TIMEOUT_S = 2.0


def targets_for(
    s3_buckets: dict[str, tuple[Any, str]], urls: dict[str, str] | None = None
) -> tuple[S3Target, ...]:
    """One S3Target per fixture bucket; urls overrides an endpoint (to go through a Toxiproxy proxy)."""
    out = []
    for region, (endpoint, bucket) in sorted(s3_buckets.items()):
        out.append(
            S3Target(
                name=region,
                bucket=bucket,
                endpoint_url=(urls or {}).get(region, endpoint.endpoint_url),
                region_name=endpoint.region_name,
                access_key_id=endpoint.access_key_id,
                secret_access_key=endpoint.secret_access_key,
                connect_timeout_s=S3_TIMEOUT_S,
                read_timeout_s=S3_TIMEOUT_S,
                max_attempts=1,
            )
        )
    return tuple(out)


def make_config(
    s3_buckets: dict[str, tuple[Any, str]],
    dsn: str,
    key: BackupKey | None = None,
    urls: dict[str, str] | None = None,
) -> BackupConfig:
    """A backup config over the fixture buckets with a fresh random key."""
    return BackupConfig(
        targets=targets_for(s3_buckets, urls),
        key=key or BackupKey.generate(),
        dsn=dsn,
        part_size=5 * 1024 * 1024,
    )


def backup_env(s3_buckets: dict[str, tuple[Any, str]], key_file: Path, dsn: str) -> dict[str, str]:
    """The backup settings as an operator sets them: targets, per-region credentials, key file, database."""
    env = {"BRIDGE_BACKUP_KEY_FILE": str(key_file), "BRIDGE_BACKUP_DSN": dsn, "BRIDGE_BACKUP_S3_TIMEOUT": "5"}
    targets = []
    for region, (endpoint, bucket) in sorted(s3_buckets.items()):
        targets.append(
            f"name={region},endpoint={endpoint.endpoint_url},bucket={bucket},region={endpoint.region_name}"
        )
        prefix = f"BRIDGE_BACKUP_{region.upper().replace('-', '_')}"
        env[f"{prefix}_ACCESS_KEY_ID"] = endpoint.access_key_id
        env[f"{prefix}_SECRET_ACCESS_KEY"] = endpoint.secret_access_key
    env["BRIDGE_BACKUP_TARGETS"] = ";".join(targets)
    return env


def new_key_file(path: Path) -> Path:
    """A new backup key file, mode 0600."""
    path.touch(mode=0o600)
    path.write_text(BackupKey.generate().material.hex() + "\n")
    return path


def only_region(config: BackupConfig, region: str) -> BackupConfig:
    """The same config restricted to one region (the other one is lost)."""
    return replace(config, targets=(config.target(region),))


@contextmanager
def s3_proxy(dr_env: Environment, region: str) -> Iterator[tuple[Any, str]]:
    """A Toxiproxy proxy in front of one region's S3 server; yields (proxy, endpoint URL through it)."""
    endpoint = dr_env.s3[region]
    upstream = endpoint.endpoint_url.split("://", 1)[1].rstrip("/")
    proxy = dr_env.toxiproxy.create_proxy(
        f"s3-{region}-{random.getrandbits(32):08x}", upstream=upstream, listen=dr_env.proxy_listen_spec()
    )
    try:
        host, port = dr_env.proxy_address(proxy)
        yield proxy, f"http://{host}:{port}"
    finally:
        dr_env.toxiproxy.delete_proxy(proxy.name)


def seed(dsn: str, profile: Profile, *, seed: int = 5, companies: int | None = None) -> dict[str, str]:
    """Write realistic companies through the bridge store; return their digests computed from memory."""
    expected: dict[str, str] = {}
    rng = random.Random(seed)
    with PgAuthStore(dsn) as store:
        for i in range(companies or profile.companies):
            company = f"company-{i:02d}"
            creds, keys = datagen.make_company(rng, company, profile.keys_per_company)
            store.save_creds(company, creds)
            store.set_keys(company, keys)
            expected[company] = company_digest(creds, keys)
    return expected


def snapshot(dsn: str) -> ContentSummary:
    """Row counts and company digests of a database as it is now."""
    with psycopg.connect(dsn) as conn:
        return summarize(conn)


def scratch_databases(admin_dsn: str) -> list[str]:
    """Scratch databases left on a server by validation (there must be none)."""
    with psycopg.connect(admin_dsn) as conn:
        return [
            r[0]
            for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'bridge_validate_%'")
        ]


class Evidence:
    """Figures and attachments for the report: through the `dr` fixture when the report plugin is loaded,
    and always as pytest user_properties (JUnit XML), so nothing measured is lost."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.node = request.node
        self.dr: Any = None
        with contextlib.suppress(pytest.FixtureLookupError):
            self.dr = request.getfixturevalue("dr")
        self.figures: dict[str, Any] = {}

    def phase(self, name: str, description: str = "") -> AbstractContextManager[Any]:
        """A lifecycle phase (steady_state, inject, observe, heal, recover)."""
        return self.dr.phase(name, description) if self.dr is not None else contextlib.nullcontext()

    def measure(
        self, name: str, value: float, target: float | None = None, *, unit: str = "", comparison: str = "<="
    ) -> float:
        """Record a figure (and its target); the scenario asserts it itself."""
        self.figures[name] = {"value": value, "target": target, "unit": unit}
        self.node.user_properties.append((f"{name}_{unit}" if unit else name, round(value, 4)))
        if self.dr is not None:
            self.dr.measure(name, value, target, unit=unit, comparison=comparison, check=False)
        return value

    def attach(self, name: str, data: Any) -> None:
        """Attach a JSON document (manifest summary, validation report)."""
        self.node.user_properties.append((name, data))
        if self.dr is not None:
            self.dr.attach_json(name, data)
