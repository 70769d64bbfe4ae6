"""Backup configuration: precedence, bad values named, and the key never shown."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from bridge.backup.config import BackupKey, get_config
from bridge.backup.errors import BackupConfigError

SPEC_A = "name=region-a,endpoint=http://127.0.0.1:9000,bucket=bk-a"
SPEC_B = "name=region-b,endpoint=http://127.0.0.1:9001,bucket=bk-b,region=eu-west-1"


def test_targets_and_key_from_environment() -> None:
    raw = bytes(range(32))
    env = {
        "BRIDGE_BACKUP_TARGETS": f"{SPEC_A};{SPEC_B}",
        "BRIDGE_BACKUP_KEY": base64.b64encode(raw).decode(),
        "AWS_ACCESS_KEY_ID": "ak",
        "AWS_SECRET_ACCESS_KEY": "sk",
        "BRIDGE_BACKUP_REGION_B_ACCESS_KEY_ID": "bk",
    }
    cfg = get_config(env=env)
    assert [t.name for t in cfg.targets] == ["region-a", "region-b"]
    assert cfg.targets[1].region_name == "eu-west-1" and cfg.targets[1].bucket == "bk-b"
    assert cfg.targets[0].access_key_id == "ak" and cfg.targets[1].access_key_id == "bk"
    assert cfg.key is not None and cfg.key.material == raw


def test_argument_wins_over_environment(tmp_path: Path) -> None:
    key_file = tmp_path / "k"
    key_file.write_text("11" * 32)
    env = {"BRIDGE_BACKUP_TARGETS": SPEC_B, "BRIDGE_BACKUP_KEY": "22" * 32, "BRIDGE_BACKUP_PREFIX": "envp"}
    cfg = get_config(targets=[SPEC_A], key_file=str(key_file), prefix="argp", env=env)
    assert [t.name for t in cfg.targets] == ["region-a"]
    assert cfg.key == BackupKey(bytes.fromhex("11" * 32)) and cfg.prefix == "argp"


def test_secrets_are_not_in_repr() -> None:
    env = {
        "BRIDGE_BACKUP_TARGETS": SPEC_A,
        "BRIDGE_BACKUP_KEY": "ab" * 32,
        "AWS_SECRET_ACCESS_KEY": "s3cr3t",
        "BRIDGE_BACKUP_DSN": "host=x password=pw123",
    }
    text = repr(get_config(env=env)) + str(get_config(env=env).key)
    assert "ab" * 32 not in text and "s3cr3t" not in text and "pw123" not in text


@pytest.mark.parametrize(
    "env,setting,fragment",
    [
        ({}, "target", "BRIDGE_BACKUP_TARGETS"),
        ({"BRIDGE_BACKUP_TARGETS": "name=a,bucket=b,colour=red"}, "target", "colour=red"),
        ({"BRIDGE_BACKUP_TARGETS": "name=a"}, "target", "no bucket="),
        ({"BRIDGE_BACKUP_TARGETS": f"{SPEC_A};{SPEC_A}"}, "target", "duplicate"),
        ({"BRIDGE_BACKUP_TARGETS": SPEC_A, "BRIDGE_BACKUP_KEY": "tooshort"}, "key", "BRIDGE_BACKUP_KEY"),
        ({"BRIDGE_BACKUP_TARGETS": SPEC_A, "BRIDGE_BACKUP_S3_TIMEOUT": "soon"}, "s3_timeout", "soon"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], setting: str, fragment: str) -> None:
    with pytest.raises(BackupConfigError) as info:
        get_config(env=env)
    assert info.value.setting == setting and fragment in str(info.value)


def test_bad_key_error_does_not_echo_the_key() -> None:
    bad = "zz" * 40
    with pytest.raises(BackupConfigError) as info:
        get_config(env={"BRIDGE_BACKUP_TARGETS": SPEC_A, "BRIDGE_BACKUP_KEY": bad})
    assert bad not in str(info.value)


def test_missing_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(BackupConfigError, match="cannot read backup key file"):
        get_config(targets=[SPEC_A], key_file=str(tmp_path / "nope"), env={})


def test_unknown_region_lists_configured_ones() -> None:
    cfg = get_config(targets=[SPEC_A, SPEC_B], env={})
    with pytest.raises(BackupConfigError, match="region-a, region-b"):
        cfg.target("region-c")


def test_key_id_is_a_stable_fingerprint() -> None:
    key = BackupKey(bytes(32))
    assert key.key_id == BackupKey(bytes(32)).key_id != BackupKey(bytes([1] * 32)).key_id
    assert len(key.key_id) == 16 and bytes(32).hex() not in key.key_id


def test_cli_reports_configuration_errors_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bridge.backup.cli import EXIT_USAGE, main

    for var in ("BRIDGE_BACKUP_TARGETS", "BRIDGE_BACKUP_KEY", "BRIDGE_BACKUP_KEY_FILE", "BRIDGE_BACKUP_DSN"):
        monkeypatch.delenv(var, raising=False)
    assert main(["create"]) == EXIT_USAGE
    assert "configuration error (target)" in capsys.readouterr().err
    assert main(["restore", "--target", SPEC_A]) == EXIT_USAGE
    assert "--target-time" in capsys.readouterr().err
    assert (
        main(["restore", "--target", SPEC_A, "--target-time", "yesterday", "--data-dir", "/nonexistent"])
        == EXIT_USAGE
    )
    assert "not an ISO time" in capsys.readouterr().err


def test_keygen_writes_a_private_key_file_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bridge.backup.cli import EXIT_OK, EXIT_USAGE, main

    out = tmp_path / "backup.key"
    assert main(["keygen", str(out)]) == EXIT_OK
    assert out.stat().st_mode & 0o777 == 0o600
    key = BackupKey.from_file(out)
    printed = capsys.readouterr().out
    assert key.key_id in printed and key.material.hex() not in printed
    assert main(["keygen", str(out)]) == EXIT_USAGE
    assert BackupKey.from_file(out) == key
