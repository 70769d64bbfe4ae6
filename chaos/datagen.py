"""Realistic Baileys 6.7.x auth state from a seeded RNG: creds and every signal key type, in memory form.

Shapes follow Baileys 6.7.24's multi-file auth state: bytes are bytes (KeyPairs, signatures, hashes),
the fields Baileys keeps as base64 *strings* stay strings (advSecretKey, account, session internals,
app-state keyData), sender keys are the bytes of a JSON text whose inner Buffers are byte arrays, and
app-state-sync-key values keep their protobuf-JSON form. The same seed always gives the same data.

Every key pair is a real X25519 pair (creds, pre-keys, session ratchets, own sender keys), so the pinned
Baileys and libsignal accept the data: compat/verify_folder.js checks that each public key matches its
private key.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bridge.ids import KEY_TYPES

# Share of each growing type in a company's keys, after the five app-state-sync-version rows.
# Sessions dominate (one per peer device ever contacted), as the format document says.
_MIX = {
    "session": 0.50,
    "pre-key": 0.25,
    "sender-key": 0.15,
    "sender-key-memory": 0.06,
    "app-state-sync-key": 0.04,
}
APP_STATE_COLLECTIONS = ("critical_block", "critical_unblock_low", "regular_high", "regular_low", "regular")
FIRST_PRE_KEY_ID = 1
# A 2025-01-01 epoch in ms, so timestamps look like real ones and stay reproducible.
_EPOCH_MS = 1_735_689_600_000

Keys = dict[str, dict[str, Any]]


def b64(data: bytes) -> str:
    """Standard padded base64 text, as Baileys and libsignal write their string fields."""
    return base64.b64encode(data).decode("ascii")


def x25519_pair(rng: random.Random) -> tuple[bytes, bytes]:
    """A real X25519 pair (private, public), raw 32 bytes each, from 64 bytes of rng.

    The private key is the first 32 bytes; the second 32 are drawn and dropped, so each pair takes as
    much of the stream as a random pair did and the ids and workload choices drawn after it stay put.
    """
    private = rng.randbytes(32)
    rng.randbytes(32)
    public = (
        X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    return private, public


def key_pair(rng: random.Random) -> dict[str, bytes]:
    """A Baileys KeyPair: a real X25519 pair, 32 + 32 bytes, public without the 0x05 prefix."""
    private, public = x25519_pair(rng)
    return {"private": private, "public": public}


def phone(rng: random.Random) -> str:
    """A Brazilian mobile number in JID user form."""
    return f"55119{rng.randrange(10**7, 10**8)}"


def group_jid(rng: random.Random) -> str:
    """A group JID; one in five uses the older <creator>-<timestamp>@g.us form (it contains '-')."""
    if rng.random() < 0.2:
        return f"{phone(rng)}-{rng.randrange(1_500_000_000, 1_700_000_000)}@g.us"
    return f"1203630{rng.randrange(10**11, 10**12)}@g.us"


def session_id(rng: random.Random) -> str:
    """A libsignal ProtocolAddress string <user>.<device>."""
    return f"{phone(rng)}.{rng.choice((0, 0, 0, 1, 2, 3, 4, 12))}"


def session_value(rng: random.Random) -> dict[str, Any]:
    """A SessionRecord.serialize() object; every binary field is a plain base64 string."""
    sessions: dict[str, Any] = {}
    for n in range(rng.choice((1, 1, 1, 2, 3))):
        base_key = b64(b"\x05" + rng.randbytes(32))
        chains = {
            b64(b"\x05" + rng.randbytes(32)): {
                "chainKey": {"counter": rng.randrange(0, 50), "key": b64(rng.randbytes(32))},
                "chainType": rng.choice((1, 2)),
                "messageKeys": {str(i): b64(rng.randbytes(32)) for i in range(rng.randrange(0, 4))},
            }
            for _ in range(rng.choice((1, 2)))
        }
        created = _EPOCH_MS + rng.randrange(0, 10**9)
        registration_id = rng.randrange(1, 16384)  # before the pair: a seed draws in the order it always did
        ratchet_private, ratchet_public = x25519_pair(rng)
        entry: dict[str, Any] = {
            "registrationId": registration_id,
            "currentRatchet": {
                "ephemeralKeyPair": {
                    "pubKey": b64(b"\x05" + ratchet_public),
                    "privKey": b64(ratchet_private),
                },
                "lastRemoteEphemeralKey": b64(b"\x05" + rng.randbytes(32)),
                "previousCounter": rng.randrange(0, 20),
                "rootKey": b64(rng.randbytes(32)),
            },
            "indexInfo": {
                "baseKey": base_key,
                "baseKeyType": rng.choice((1, 2)),
                "closed": -1 if n == 0 else created + 1000,
                "used": created + 500,
                "created": created,
                "remoteIdentityKey": b64(b"\x05" + rng.randbytes(32)),
            },
            "_chains": chains,
        }
        if rng.random() < 0.3:
            entry["pendingPreKey"] = {
                "signedKeyId": 1,
                "baseKey": b64(b"\x05" + rng.randbytes(32)),
                "preKeyId": rng.randrange(1, 5000),
            }
        sessions[base_key] = entry
    return {"_sessions": sessions, "version": "v1"}


def _native_buffer(data: bytes) -> dict[str, Any]:
    """Node's own Buffer JSON ({"type":"Buffer","data":[...]}), as found inside sender-key records."""
    return {"type": "Buffer", "data": list(data)}


def sender_key_value(rng: random.Random, *, own: bool = False) -> bytes:
    """A 6.7.19+ sender key: the UTF-8 JSON text of SenderKeyRecord.serialize(), carried as bytes."""
    states = []
    for _ in range(rng.choice((1, 1, 2))):
        if own:  # only our own sender key carries its private half, which must match the public one
            private, public = x25519_pair(rng)
            signing = {"public": _native_buffer(b"\x05" + public), "private": _native_buffer(private)}
        else:
            signing = {"public": _native_buffer(b"\x05" + rng.randbytes(32))}
        iteration = rng.randrange(0, 200)
        states.append(
            {
                "senderKeyId": rng.randrange(1, 2**31),
                "senderChainKey": {"iteration": iteration, "seed": _native_buffer(rng.randbytes(32))},
                "senderSigningKey": signing,
                "senderMessageKeys": [
                    {"iteration": iteration - i - 1, "seed": _native_buffer(rng.randbytes(32))}
                    for i in range(rng.randrange(0, 3))
                ],
            }
        )
    return json.dumps(states, separators=(",", ":")).encode("utf-8")


def sender_key_memory_value(rng: random.Random) -> dict[str, bool]:
    """The devices that already received our sender key for a group."""
    devices: dict[str, bool] = {}
    for _ in range(rng.randrange(1, 8)):
        user, device = phone(rng), rng.choice((0, 0, 1, 3, 12))
        devices[f"{user}@s.whatsapp.net" if device == 0 else f"{user}:{device}@s.whatsapp.net"] = True
    return devices


def app_state_key_id(rng: random.Random) -> str:
    """A base64 app-state-sync-key id (6 bytes -> 8 characters, may contain '/' and '+')."""
    return b64(rng.randbytes(6))


def app_state_key_value(rng: random.Random) -> dict[str, Any]:
    """AppStateSyncKeyData in protobuf-JSON: keyData a base64 string, timestamp a decimal string in ms."""
    return {
        "keyData": b64(rng.randbytes(32)),
        "fingerprint": {
            "rawId": rng.randrange(1, 2**31),
            "currentIndex": rng.randrange(0, 10),
            "deviceIndexes": [0, rng.choice((1, 12, 20))],
        },
        "timestamp": str(_EPOCH_MS + rng.randrange(0, 10**9)),
    }


def app_state_version_value(rng: random.Random) -> dict[str, Any]:
    """An LTHashState: version, a 128-byte hash and an indexValueMap of valueMacs."""
    return {
        "version": rng.randrange(1, 500),
        "hash": rng.randbytes(128),
        "indexValueMap": {
            b64(rng.randbytes(32)): {"valueMac": rng.randbytes(32)} for _ in range(rng.randrange(0, 6))
        },
    }


def pre_keys(rng: random.Random, first_id: int, count: int) -> dict[str, dict[str, bytes]]:
    """count pre-keys with consecutive decimal ids from first_id."""
    return {str(i): key_pair(rng) for i in range(first_id, first_id + count)}


def make_creds(
    rng: random.Random, *, name: str = "test", next_pre_key_id: int, app_state_key: str | None = None
) -> dict[str, Any]:
    """A paired session's AuthenticationCreds, in initAuthCreds() field order plus the pairing fields."""
    user, device = phone(rng), rng.choice((12, 15, 23))
    me_id = f"{user}:{device}@s.whatsapp.net"
    creds: dict[str, Any] = {
        "noiseKey": key_pair(rng),
        "pairingEphemeralKeyPair": key_pair(rng),
        "signedIdentityKey": key_pair(rng),
        "signedPreKey": {"keyPair": key_pair(rng), "signature": rng.randbytes(64), "keyId": 1},
        "registrationId": rng.randrange(0, 16384),
        "advSecretKey": b64(rng.randbytes(32)),
        "processedHistoryMessages": [
            {
                "key": {
                    "remoteJid": f"{user}@s.whatsapp.net",
                    "fromMe": True,
                    "id": rng.randbytes(10).hex().upper(),
                },
                "messageTimestamp": 1_735_689_600 + rng.randrange(0, 10**6),
            }
            for _ in range(rng.randrange(1, 4))
        ],
        "nextPreKeyId": next_pre_key_id,
        "firstUnuploadedPreKeyId": next_pre_key_id,
        "accountSyncCounter": rng.randrange(0, 5),
        "accountSettings": {"unarchiveChats": False},
        "registered": False,
        "me": {
            "id": me_id,
            "name": f"Oráculo ✓ {name}",
            "lid": f"{rng.randrange(10**14, 10**15)}:{device}@lid",
        },
        "account": {
            "details": b64(rng.randbytes(20)),
            "accountSignatureKey": b64(rng.randbytes(32)),
            "accountSignature": b64(rng.randbytes(64)),
            "deviceSignature": b64(rng.randbytes(64)),
        },
        "signalIdentities": [
            {"identifier": {"name": me_id, "deviceId": 0}, "identifierKey": b"\x05" + rng.randbytes(32)}
        ],
        "platform": rng.choice(("smba", "android", "iphone")),
        "lastAccountSyncTimestamp": 1_735_689_600 + rng.randrange(0, 10**6),
    }
    if app_state_key is not None:
        creds["myAppStateKeyId"] = app_state_key
    return creds


def _counts(n_keys: int) -> dict[str, int]:
    """Split n_keys over the types: up to five app-state versions, then the mix, at least one of each."""
    counts = dict.fromkeys(KEY_TYPES, 0)
    counts["app-state-sync-version"] = min(len(APP_STATE_COLLECTIONS), max(0, n_keys - len(_MIX)))
    rest = n_keys - counts["app-state-sync-version"]
    if rest < len(_MIX):  # too few for the mix: one each, largest types first
        for key_type in list(_MIX)[:rest]:
            counts[key_type] = 1
        return counts
    for key_type, share in _MIX.items():
        counts[key_type] = max(1, int(rest * share))
    counts["session"] += rest - sum(counts[t] for t in _MIX)  # rounding goes to the largest type
    return counts


def make_company(rng: random.Random, company_id: str, n_keys: int) -> tuple[dict[str, Any], Keys]:
    """Return (creds, {type: {id: value}}) with exactly n_keys keys; every type present when n_keys >= 6."""
    if n_keys < 0:
        raise ValueError(f"n_keys must be >= 0, got {n_keys}")
    return make_company_with(rng, company_id, _counts(n_keys))


def make_company_with(
    rng: random.Random, company_id: str, mix: Mapping[str, int]
) -> tuple[dict[str, Any], Keys]:
    """Return (creds, {type: {id: value}}) with exactly mix[type] keys of each type (absent types: none)."""
    unknown = sorted(set(mix) - set(KEY_TYPES))
    if unknown or any(n < 0 for n in mix.values()):
        raise ValueError(f"mix needs counts >= 0 of the key types {list(KEY_TYPES)}, got {dict(mix)}")
    if mix.get("app-state-sync-version", 0) > len(APP_STATE_COLLECTIONS):
        raise ValueError(
            f"at most {len(APP_STATE_COLLECTIONS)} app-state-sync-version keys (one per collection)"
        )
    counts = {t: mix.get(t, 0) for t in KEY_TYPES}
    own_user = phone(rng)
    keys: Keys = {t: {} for t in KEY_TYPES}
    # Consumed pre-keys are gone, so the live ones start above 1 and end just below nextPreKeyId.
    first_pre_key = FIRST_PRE_KEY_ID + rng.randrange(0, 60)
    keys["pre-key"] = pre_keys(rng, first_pre_key, counts["pre-key"])
    while len(keys["session"]) < counts["session"]:
        keys["session"][session_id(rng)] = session_value(rng)
    groups = [group_jid(rng) for _ in range(max(1, counts["sender-key-memory"]))]
    while len(keys["sender-key"]) < counts["sender-key"]:
        group = rng.choice(groups)
        own = len(keys["sender-key"]) < len(groups) and rng.random() < 0.5
        user = own_user if own else phone(rng)
        keys["sender-key"][f"{group}::{user}::{rng.choice((0, 0, 1, 12))}"] = sender_key_value(rng, own=own)
    for group in groups[: counts["sender-key-memory"]]:
        keys["sender-key-memory"][group] = sender_key_memory_value(rng)
    while len(keys["app-state-sync-key"]) < counts["app-state-sync-key"]:
        keys["app-state-sync-key"][app_state_key_id(rng)] = app_state_key_value(rng)
    for name in APP_STATE_COLLECTIONS[: counts["app-state-sync-version"]]:
        keys["app-state-sync-version"][name] = app_state_version_value(rng)
    latest_app_key = next(reversed(keys["app-state-sync-key"]), None)
    creds = make_creds(
        rng, name=company_id, next_pre_key_id=first_pre_key + counts["pre-key"], app_state_key=latest_app_key
    )
    return creds, {t: v for t, v in keys.items() if v}


def make_companies(
    seed: int, count: int, n_keys: int, *, prefix: str = "company"
) -> dict[str, tuple[dict, Keys]]:
    """count companies named <prefix>-NN from one seed; each gets its own derived RNG."""
    return {
        f"{prefix}-{i:02d}": make_company(random.Random(f"{seed}:{i}"), f"{prefix}-{i:02d}", n_keys)
        for i in range(count)
    }


def key_count(keys: Keys) -> int:
    """Total keys over all types."""
    return sum(len(v) for v in keys.values())
