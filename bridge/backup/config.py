"""Backup configuration: S3 targets, the encryption key and PostgreSQL tools, from arguments or env."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.backup.errors import BackupConfigError

KEY_ENV = "BRIDGE_BACKUP_KEY"
KEY_FILE_ENV = "BRIDGE_BACKUP_KEY_FILE"
TARGETS_ENV = "BRIDGE_BACKUP_TARGETS"
DSN_ENV = "BRIDGE_BACKUP_DSN"
PREFIX_ENV = "BRIDGE_BACKUP_PREFIX"
PG_BINDIR_ENV = "BRIDGE_BACKUP_PG_BINDIR"
TIMEOUT_ENV = "BRIDGE_BACKUP_S3_TIMEOUT"
TARGET_FIELDS = ("name", "endpoint", "bucket", "region")


@dataclass(frozen=True)
class S3Target:
    """One S3-compatible region and the bucket that holds backups there."""

    name: str
    bucket: str
    endpoint_url: str | None = None
    region_name: str = "us-east-1"
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    max_attempts: int = 3

    def describe(self) -> str:
        """Name the region, endpoint and bucket for messages (never the credentials)."""
        return f"region {self.name} ({self.endpoint_url or 'AWS'}, bucket {self.bucket!r})"

    def client(self) -> Any:
        """Return a boto3 S3 client with bounded timeouts and retries."""
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=self.connect_timeout_s,
            read_timeout=self.read_timeout_s,
            retries={"max_attempts": self.max_attempts, "mode": "standard"},
            s3={"addressing_style": "path"},
            max_pool_connections=4,
        )
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region_name,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=config,
        )


@dataclass(frozen=True)
class BackupKey:
    """A 256-bit backup key; repr and str never show the material, only its fingerprint."""

    material: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.material) != 32:
            raise BackupConfigError(
                f"backup key must be 32 bytes (AES-256), got {len(self.material)}", setting="key"
            )

    @property
    def key_id(self) -> str:
        """Return a 16-hex fingerprint that identifies the key without revealing it."""
        return hmac.new(self.material, b"bridge-backup key id v1", hashlib.sha256).hexdigest()[:16]

    def subkey(self, purpose: str) -> bytes:
        """Derive an independent 32-byte key for one purpose (manifest MAC, ...)."""
        return hmac.new(self.material, f"bridge-backup {purpose} v1".encode(), hashlib.sha256).digest()

    def __str__(self) -> str:
        return f"BackupKey(id={self.key_id})"

    @classmethod
    def generate(cls) -> BackupKey:
        """Return a fresh random key."""
        return cls(secrets.token_bytes(32))

    @classmethod
    def from_text(cls, text: str, *, source: str) -> BackupKey:
        """Parse 64 hex digits or base64 of 32 bytes; the error names the source, never the text."""
        text = text.strip()
        raw: bytes | None = None
        if len(text) == 64:
            try:
                raw = bytes.fromhex(text)
            except ValueError:
                raw = None
        if raw is None:
            try:
                raw = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raw = None
        if raw is None or len(raw) != 32:
            raise BackupConfigError(
                f"backup key from {source} is not 32 bytes as 64 hex digits or base64", setting="key"
            )
        return cls(raw)

    @classmethod
    def from_file(cls, path: Path) -> BackupKey:
        """Read a key file: 32 raw bytes, 64 hex digits or base64."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BackupConfigError(
                f"cannot read backup key file {path}: {exc.strerror}", setting="key"
            ) from exc
        if len(data) == 32:
            return cls(data)
        try:
            return cls.from_text(data.decode("ascii"), source=f"key file {path}")
        except UnicodeDecodeError:
            raise BackupConfigError(
                f"backup key file {path} is neither 32 raw bytes nor text", setting="key"
            ) from None


@dataclass(frozen=True)
class BackupConfig:
    """Everything a backup command needs; built once by get_config or directly by callers."""

    targets: tuple[S3Target, ...]
    key: BackupKey | None = None
    dsn: str | None = field(default=None, repr=False)
    prefix: str = "bridge"
    pg_bindir: Path | None = None
    compress_level: int = 1
    part_size: int = 8 * 1024 * 1024
    chunk_size: int = 1024 * 1024

    def require_key(self) -> BackupKey:
        """Return the key or fail naming where it can come from."""
        if self.key is None:
            raise BackupConfigError(
                f"no backup key: pass --key-file or set {KEY_ENV} or {KEY_FILE_ENV}", setting="key"
            )
        return self.key

    def require_dsn(self) -> str:
        """Return the database DSN or fail naming where it can come from."""
        if not self.dsn:
            raise BackupConfigError(f"no database: pass --dsn or set {DSN_ENV}", setting="dsn")
        return self.dsn

    def target(self, name: str) -> S3Target:
        """Return the target called name; the error lists the configured ones."""
        for t in self.targets:
            if t.name == name:
                return t
        raise BackupConfigError(
            f"unknown region {name!r}; configured regions: "
            f"{', '.join(t.name for t in self.targets) or 'none'}",
            setting="region",
        )

    def tool(self, name: str) -> str:
        """Return the path of a PostgreSQL client program (pg_dump, pg_restore, ...)."""
        if self.pg_bindir is not None:
            path = self.pg_bindir / name
            if not os.access(path, os.X_OK):
                raise BackupConfigError(f"{name} not found in {self.pg_bindir}", setting="pg_bindir")
            return str(path)
        return find_pg_tool(name)


def find_pg_tool(name: str) -> str:
    """Find a PostgreSQL program on PATH or in the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    if candidates:
        return str(candidates[-1])
    raise BackupConfigError(
        f"{name} not found on PATH or in /usr/lib/postgresql/*/bin; set {PG_BINDIR_ENV}", setting="pg_bindir"
    )


def parse_target(spec: str, env: Mapping[str, str], *, timeout_s: float | None = None) -> S3Target:
    """Parse 'name=R,endpoint=URL,bucket=B[,region=us-east-1]'; credentials come from the environment."""
    values: dict[str, str] = {}
    for part in spec.split(","):
        k, sep, v = part.partition("=")
        k = k.strip()
        if not sep or k not in TARGET_FIELDS:
            raise BackupConfigError(
                f"bad target item {part.strip()!r} in {spec!r}; "
                "expected name=...,endpoint=...,bucket=...[,region=...]",
                setting="target",
            )
        values[k] = v.strip()
    for required in ("name", "bucket"):
        if not values.get(required):
            raise BackupConfigError(f"target {spec!r} has no {required}=", setting="target")
    name = values["name"]
    env_name = name.upper().replace("-", "_")
    extra: dict[str, Any] = {}
    if timeout_s is not None:
        extra = {"connect_timeout_s": timeout_s, "read_timeout_s": timeout_s}
    return S3Target(
        name=name,
        bucket=values["bucket"],
        endpoint_url=values.get("endpoint") or None,
        region_name=values.get("region") or "us-east-1",
        access_key_id=env.get(f"BRIDGE_BACKUP_{env_name}_ACCESS_KEY_ID") or env.get("AWS_ACCESS_KEY_ID"),
        secret_access_key=env.get(f"BRIDGE_BACKUP_{env_name}_SECRET_ACCESS_KEY")
        or env.get("AWS_SECRET_ACCESS_KEY"),
        **extra,
    )


def get_config(
    *,
    targets: list[str] | None = None,
    key_file: str | None = None,
    dsn: str | None = None,
    prefix: str | None = None,
    pg_bindir: str | None = None,
    s3_timeout_s: float | None = None,
    compress_level: int | None = None,
    env: Mapping[str, str] | None = None,
) -> BackupConfig:
    """Build the config; an argument wins over its environment variable, which wins over the default."""
    env = os.environ if env is None else env
    if s3_timeout_s is None and env.get(TIMEOUT_ENV):
        try:
            s3_timeout_s = float(env[TIMEOUT_ENV])
        except ValueError:
            raise BackupConfigError(
                f"{TIMEOUT_ENV}={env[TIMEOUT_ENV]!r} is not a number", setting="s3_timeout"
            ) from None
    specs = targets or [s for s in env.get(TARGETS_ENV, "").split(";") if s.strip()]
    if not specs:
        raise BackupConfigError(f"no S3 target: pass --target or set {TARGETS_ENV}", setting="target")
    parsed = tuple(parse_target(s, env, timeout_s=s3_timeout_s) for s in specs)
    names = [t.name for t in parsed]
    if len(set(names)) != len(names):
        raise BackupConfigError(f"duplicate region names in targets: {names}", setting="target")
    key: BackupKey | None = None
    if key_file:
        key = BackupKey.from_file(Path(key_file))
    elif env.get(KEY_ENV):
        key = BackupKey.from_text(env[KEY_ENV], source=KEY_ENV)
    elif env.get(KEY_FILE_ENV):
        key = BackupKey.from_file(Path(env[KEY_FILE_ENV]))
    level = compress_level if compress_level is not None else 1
    if not 0 <= level <= 9:
        raise BackupConfigError(f"compress level must be 0..9, got {level}", setting="compress_level")
    bindir = pg_bindir or env.get(PG_BINDIR_ENV)
    return BackupConfig(
        targets=parsed,
        key=key,
        dsn=dsn or env.get(DSN_ENV),
        prefix=(prefix or env.get(PREFIX_ENV) or "bridge").strip("/"),
        pg_bindir=Path(bindir) if bindir else None,
        compress_level=level,
    )
