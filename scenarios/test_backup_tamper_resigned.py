"""Claim 4.4: a backup whose ciphertext was altered and whose manifest was rewritten and re-signed with the
key passes every checksum; AES-256-GCM's authentication still refuses it, naming the chunk."""

from __future__ import annotations

import pytest

from chaos.profiles import Profile
from environment.env import AuthDatabase, Environment, S3Buckets
from scenarios.backup_restore_support import run_resigned_tamper


def test_restore_refused_by_authenticated_decryption_when_ciphertext_altered_and_manifest_resigned(
    auth_db: AuthDatabase,
    s3_buckets: S3Buckets,
    dr_env: Environment,
    profile: Profile,
    request: pytest.FixtureRequest,
) -> None:
    run_resigned_tamper(request, auth_db, s3_buckets, dr_env, profile)
