"""Helpers for the rollback tests: Baileys-made folders, realistic synthetic companies, direct SQL seeding."""

from __future__ import annotations

import base64
import json
import random
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from bridge import codec, fsformat
from bridge.rollback.baileys_check import PROJECT_ROOT, node_command

GENERATE_SCRIPT = PROJECT_ROOT / "compat" / "generate_folder.js"

Row = tuple[str, str, Any]  # (key_type, key_id, value in stored BufferJSON form)


def generate_baileys_folder(folder: Path, **options: int) -> list[tuple[str, str]]:
    """Write a folder with the pinned Baileys (compat/generate_folder.js); return the (type, id) it holds."""
    args = []
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    proc = subprocess.run(
        [*node_command(), str(GENERATE_SCRIPT), str(folder), *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"generate_folder.js failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return [(t, i) for t, i in json.loads(proc.stdout)["ids"]]


def read_folder_rows(folder: Path, ids: list[tuple[str, str]]) -> tuple[dict[str, Any], list[Row]]:
    """Read creds and the given keys from a Baileys folder by their escaped names, in stored form."""
    creds = json.loads((folder / fsformat.CREDS_FILE).read_bytes())
    rows = [(t, i, json.loads((folder / fsformat.file_name(t, i)).read_bytes())) for t, i in ids]
    return creds, rows


def seed_company(admin_dsn: str, company_id: str, creds: dict[str, Any], rows: list[Row]) -> None:
    """Insert (or replace) one company's rows with plain SQL, bypassing the code under test."""
    with psycopg.connect(admin_dsn) as conn, conn.transaction():
        conn.execute("DELETE FROM whatsapp_keys WHERE company_id = %s", (company_id,))
        conn.execute(
            "INSERT INTO whatsapp_auth (company_id, creds) VALUES (%s, %s::jsonb) "
            "ON CONFLICT (company_id) DO UPDATE SET creds = EXCLUDED.creds",
            (company_id, json.dumps(creds)),
        )
        copy_sql = "COPY whatsapp_keys (company_id, key_type, key_id, value) FROM STDIN"
        with conn.cursor().copy(copy_sql) as copy:
            for key_type, key_id, value in rows:
                copy.write_row((company_id, key_type, key_id, json.dumps(value)))


def db_state(dsn: str, company_id: str) -> tuple[Any, dict[tuple[str, str], Any]]:
    """Return a company's creds and keys as the database holds them now."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT creds FROM whatsapp_auth WHERE company_id = %s", (company_id,)).fetchone()
        keys = conn.execute(
            "SELECT key_type, key_id, value FROM whatsapp_keys WHERE company_id = %s", (company_id,)
        ).fetchall()
    return (row[0] if row else None), {(t, i): v for t, i, v in keys}


def folder_json(folder: Path) -> dict[str, Any]:
    """Return every .json file of a folder parsed, by name (order and whitespace do not matter)."""
    return {p.name: json.loads(p.read_bytes()) for p in sorted(folder.iterdir()) if p.suffix == ".json"}


@contextmanager
def mounted_tmpfs(path: Path, *, size: str, read_only: bool = False) -> Iterator[Path]:
    """Mount a private tmpfs at path for the block (needs CAP_SYS_ADMIN); always unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0700" + (",ro" if read_only else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if proc.returncode != 0:
        raise PermissionError(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True, capture_output=True)


# --- synthetic companies with Baileys' shapes and realistic sizes ----------------------------------------

# A production-like mix for 1,313 keys: sessions dominate, as the format document says.
KEY_MIX = {
    "pre-key": 300,
    "session": 800,
    "sender-key": 150,
    "sender-key-memory": 50,
    "app-state-sync-key": 8,
    "app-state-sync-version": 5,
}
VERSION_NAMES = ["critical_block", "critical_unblock_low", "regular_high", "regular_low", "regular"]


def _buf(data: bytes) -> dict[str, str]:
    return {"type": "Buffer", "data": base64.b64encode(data).decode()}


def _b64(rng: random.Random, n: int) -> str:
    return base64.b64encode(rng.randbytes(n)).decode()


def _raw_x25519_pair() -> tuple[bytes, bytes]:
    """Return (private, public) of a real X25519 key pair, raw 32 bytes each."""
    key = X25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return private, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _x25519_pair() -> dict[str, Any]:
    """A real X25519 key pair in Baileys' KeyPair shape (public without the 0x05 prefix)."""
    private, public = _raw_x25519_pair()
    return {"private": _buf(private), "public": _buf(public)}


def synthetic_creds(rng: random.Random) -> dict[str, Any]:
    """Creds with every required field and the post-pairing ones, in stored form."""
    return {
        "noiseKey": _x25519_pair(),
        "pairingEphemeralKeyPair": _x25519_pair(),
        "signedIdentityKey": _x25519_pair(),
        "signedPreKey": {"keyPair": _x25519_pair(), "signature": _buf(rng.randbytes(64)), "keyId": 1},
        "registrationId": rng.randrange(16384),
        "advSecretKey": _b64(rng, 32),
        "processedHistoryMessages": [
            {"key": {"remoteJid": "5511999990000@s.whatsapp.net", "fromMe": True, "id": f"3EB0{n:016X}"},
             "messageTimestamp": 1735689600 + n}
            for n in range(3)
        ],
        "nextPreKeyId": 2000,
        "firstUnuploadedPreKeyId": 2000,
        "accountSyncCounter": 1,
        "accountSettings": {"unarchiveChats": False},
        "registered": False,
        "me": {"id": "5511999990000:12@s.whatsapp.net", "lid": "187654321098765:12@lid", "name": "Oráculo ✓"},
        "account": {  # protobuf-JSON: base64 strings, not Buffer objects
            "details": _b64(rng, 40),
            "accountSignatureKey": _b64(rng, 32),
            "accountSignature": _b64(rng, 64),
            "deviceSignature": _b64(rng, 64),
        },
        "signalIdentities": [
            {"identifier": {"name": "5511999990000:12@s.whatsapp.net", "deviceId": 0},
             "identifierKey": _buf(b"\x05" + rng.randbytes(32))}
        ],
        "platform": "smba",
        "myAppStateKeyId": "AAAAAA//",
    }


def _session(rng: random.Random, entries: int, message_keys: int) -> dict[str, Any]:
    """A libsignal SessionRecord.serialize() shape: base64 strings only, never Buffer objects."""
    sessions = {}
    for n in range(entries):
        base_key = _b64(rng, 33)
        ratchet_private, ratchet_public = _raw_x25519_pair()
        sessions[base_key] = {
            "registrationId": rng.randrange(16384),
            "currentRatchet": {
                "ephemeralKeyPair": {
                    "pubKey": base64.b64encode(b"\x05" + ratchet_public).decode(),
                    "privKey": base64.b64encode(ratchet_private).decode(),
                },
                "lastRemoteEphemeralKey": _b64(rng, 33),
                "previousCounter": rng.randrange(50),
                "rootKey": _b64(rng, 32),
            },
            "indexInfo": {
                "baseKey": base_key, "baseKeyType": 1 + n % 2, "closed": -1 if n == 0 else 1735689600000 + n,
                "used": 1735689600000, "created": 1735689500000, "remoteIdentityKey": _b64(rng, 33),
            },
            "_chains": {
                _b64(rng, 33): {
                    "chainKey": {"counter": message_keys, "key": _b64(rng, 32)},
                    "chainType": 1 + c,
                    "messageKeys": {str(k): _b64(rng, 32) for k in range(message_keys if c else 0)},
                }
                for c in range(2)
            },
        }
    return {"_sessions": sessions, "version": "v1"}


def _sender_key(rng: random.Random, message_keys: int) -> dict[str, str]:
    """A sender key as Baileys 6.7.24 stores it: a Buffer holding JSON with Node-native byte arrays."""
    def arr(n: int) -> dict[str, Any]:
        return {"type": "Buffer", "data": list(rng.randbytes(n))}

    state = [{
        "senderKeyId": rng.randrange(2**31),
        "senderChainKey": {"iteration": message_keys, "seed": arr(32)},
        "senderSigningKey": {"public": arr(33)},
        "senderMessageKeys": [{"iteration": i, "seed": arr(32)} for i in range(message_keys)],
    }]
    return _buf(json.dumps(state, separators=(",", ":")).encode())


def synthetic_company(seed: int, *, mix: dict[str, int] | None = None) -> tuple[dict[str, Any], list[Row]]:
    """Return (creds, rows) for one company with Baileys' shapes and production-like value sizes."""
    rng = random.Random(seed)
    counts = KEY_MIX if mix is None else mix
    rows: list[Row] = []
    for n in range(counts.get("pre-key", 0)):
        rows.append(("pre-key", str(1000 + n), _x25519_pair()))
    for n in range(counts.get("session", 0)):
        user = f"55119{seed % 1000:03d}{n:05d}"
        rows.append(("session", f"{user}.{n % 4}", _session(rng, entries=1 + n % 5, message_keys=n % 40)))
    # New-style group ids, and old-style <creator>-<timestamp> ones that contain '-'.
    groups = [
        f"1203630{seed:04d}{g:07d}@g.us" if g % 3 else f"5511{seed:04d}-16100{g:05d}@g.us" for g in range(10)
    ]
    for n in range(counts.get("sender-key", 0)):
        rows.append(("sender-key", f"{groups[n % 10]}::55119{n:06d}::{n % 3}", _sender_key(rng, n % 20)))
    for n in range(counts.get("sender-key-memory", 0)):
        members = {f"55119{m:06d}@s.whatsapp.net" if m % 2 else f"55119{m:06d}:{m % 5}@s.whatsapp.net": True
                   for m in range(20)}
        rows.append(("sender-key-memory", groups[n % 10] if n < 10 else f"status{n}@broadcast", members))
    for n in range(counts.get("app-state-sync-key", 0)):
        key_id = "AAAAAA//" if n == 0 else base64.b64encode(rng.randbytes(6)).decode()
        rows.append(("app-state-sync-key", key_id, {
            "keyData": _b64(rng, 32),
            "fingerprint": {"rawId": 1000 + n, "currentIndex": n, "deviceIndexes": [0, 12]},
            "timestamp": str(1735689600000 + n),
        }))
    for n, name in enumerate(VERSION_NAMES[: counts.get("app-state-sync-version", 0)]):
        entries = (6000, 50, 4000, 2000, 5000)[n]
        rows.append(("app-state-sync-version", name, {
            "version": 100 + n,
            "hash": _buf(rng.randbytes(128)),
            "indexValueMap": {_b64(rng, 32): {"valueMac": _buf(rng.randbytes(32))} for _ in range(entries)},
        }))
    return synthetic_creds(rng), rows


def stored_size(creds: dict[str, Any], rows: list[Row]) -> int:
    """Return the bytes of compact BufferJSON for a company (what its folder will hold)."""
    return len(codec.dumps(creds).encode()) + sum(len(codec.dumps(v).encode()) for _, _, v in rows)


def differences(left: Any, right: Any, *, limit: int = 20) -> list[str]:
    """Return where two values differ as paths, never the values themselves (they hold key material)."""
    found: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if len(found) >= limit:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=repr):
                if key not in b:
                    found.append(f"{path}[{key!r}] only on the left")
                elif key not in a:
                    found.append(f"{path}[{key!r}] only on the right")
                else:
                    walk(a[key], b[key], f"{path}[{key!r}]")
        elif isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
            for n, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{path}[{n}]")
        elif a != b:
            found.append(f"{path} differs")

    walk(left, right, "$")
    return found
