"""Claim 4.4: a backup whose ciphertext was altered and whose manifest was rewritten and re-signed with the
key passes every checksum; AES-256-GCM's authentication still refuses it, naming the chunk."""

from __future__ import annotations

import pytest

from scenarios.backup_restore_support import run_resigned_tamper


def test_restore_refused_by_authenticated_decryption_when_ciphertext_altered_and_manifest_resigned(
    auth_db, s3_buckets, dr_env, profile, request: pytest.FixtureRequest
) -> None:
    run_resigned_tamper(request, auth_db, s3_buckets, dr_env, profile)
