"""Tamper-evident evidence pack: the run's report, summary and raw results under one SHA256SUMS, whose
digest is signed with Ed25519 (reports.signing) so that the sums cannot be rebuilt without the key."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from reports import signing

SUMS = "SHA256SUMS"
# Written after the sums, over their digest: outside the listing, checked by their own signatures.
_UNLISTED = {SUMS, signing.SIGNATURE}


@dataclass(frozen=True)
class Problem:
    """One verification failure: the file and what is wrong with it."""

    path: str
    reason: str  # modified | missing | unlisted | unsafe path | signature: <why>

    def __str__(self) -> str:
        """'modified: dr-summary.json'."""
        return f"{self.reason}: {self.path}"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _files(root: Path) -> list[Path]:
    """Every regular file under root except SHA256SUMS, the signature and approvals, as relative paths."""
    return sorted(
        p.relative_to(root)
        for p in root.rglob("*")
        if p.is_file()
        and p.relative_to(root).as_posix() not in _UNLISTED
        and p.relative_to(root).parts[0] != signing.APPROVALS
    )


def write_sums(root: str | Path) -> Path:
    """Write SHA256SUMS (sha256sum -c compatible) over every file in the pack; return its path."""
    root = Path(root)
    lines = [f"{sha256_file(root / rel)}  {rel.as_posix()}\n" for rel in _files(root)]
    out = root / SUMS
    out.write_text("".join(lines), encoding="utf-8")
    return out


def build_pack(
    pack_dir: str | Path,
    files: Mapping[str, str | Path],
    dirs: Mapping[str, str | Path] | None = None,
    *,
    key: signing.Ed25519PrivateKey | None = None,
    signer: Mapping[str, str] | None = None,
) -> Path:
    """Copy files and directories into a fresh pack, seal it with SHA256SUMS and sign its digest with key."""
    pack = Path(pack_dir)
    if pack.exists():
        shutil.rmtree(pack)
    pack.mkdir(parents=True)
    for name, source in files.items():
        target = pack / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    for name, source in (dirs or {}).items():
        shutil.copytree(source, pack / name)
    write_sums(pack)
    if key is not None:
        signing.sign_digest(pack, pack_digest(pack), key, signer or {})
    return pack


def _parse_sums(text: str) -> Iterable[tuple[str, str]]:
    """(digest, relative path) pairs from a SHA256SUMS file; binary-mode '*' markers are accepted."""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep:
            digest, sep, name = line.partition(" *")
        if not sep or len(digest) != 64:
            raise ValueError(f"{SUMS} line {number} is malformed: {line[:80]!r}")
        yield digest.lower(), name


def verify_pack(
    pack_dir: str | Path, *, signed: bool = True, fingerprint: str | None = None
) -> list[Problem]:
    """Check every listed file's digest, that none is missing or was added, and (signed) the signature.

    fingerprint pins the signing key: without it, any valid signature over the digest is accepted and the
    auditor compares the printed fingerprint with the one published for the run.
    """
    root = Path(pack_dir).resolve()
    sums = root / SUMS
    if not sums.is_file():
        return [Problem(SUMS, "missing")]
    problems: list[Problem] = []
    listed: set[str] = set()
    for digest, name in _parse_sums(sums.read_text(encoding="utf-8")):
        listed.add(name)
        path = (root / name).resolve()
        if not path.is_relative_to(root):
            problems.append(Problem(name, "unsafe path"))
        elif not path.is_file():
            problems.append(Problem(name, "missing"))
        elif sha256_file(path) != digest:
            problems.append(Problem(name, "modified"))
    for rel in _files(root):
        if rel.as_posix() not in listed:
            problems.append(Problem(rel.as_posix(), "unlisted"))
    if signed:
        for reason in signing.verify_signature(root, pack_digest(root), fingerprint):
            where, _, why = reason.partition(": ")
            problems.append(Problem(where, f"signature: {why}"))
    return problems


def pack_digest(pack_dir: str | Path) -> str:
    """SHA-256 of SHA256SUMS; published in the CI log so the sums cannot be swapped quietly."""
    return sha256_file(Path(pack_dir) / SUMS)


def main(argv: list[str] | None = None) -> int:
    """CLI: python -m reports.evidence verify DIR [--digest HEX] | seal DIR."""
    parser = argparse.ArgumentParser(prog="python -m reports.evidence", description="DR evidence pack tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="verify a pack against its SHA256SUMS; exit 1 naming each problem")
    verify.add_argument("directory")
    verify.add_argument("--digest", help="expected SHA-256 of SHA256SUMS itself, as published by the run")
    verify.add_argument("--fingerprint", help="expected signing key fingerprint (SHA256:...), as published")
    seal = sub.add_parser("seal", help="(re)write SHA256SUMS over a directory (unsigned: verify then fails)")
    seal.add_argument("directory")
    approve = sub.add_parser(
        "approve",
        help=f"add a signed approver statement (key from ${signing.KEY_FILE_ENV} or ${signing.KEY_ENV})",
    )
    approve.add_argument("directory")
    approve.add_argument("--approver", required=True, help="the person approving the evidence")
    approve.add_argument("--statement", default="I have reviewed this DR evidence pack and approve it.")
    args = parser.parse_args(argv)
    if args.command == "seal":
        print(f"sealed {write_sums(args.directory)}; pack digest {pack_digest(args.directory)}")
        return 0
    if args.command == "approve":
        return _approve(Path(args.directory), args.approver, args.statement)
    try:
        problems = verify_pack(args.directory, fingerprint=args.fingerprint)
    except ValueError as exc:
        print(f"evidence pack {args.directory}: INVALID: {exc}", file=sys.stderr)
        return 1
    if not problems and args.digest and pack_digest(args.directory) != args.digest.lower():
        problems = [Problem(SUMS, "modified (does not match the published pack digest)")]
    for problem in problems:
        print(f"evidence pack {args.directory}: TAMPERED {problem}", file=sys.stderr)
    if problems:
        return 1
    count = sum(1 for _ in _parse_sums((Path(args.directory) / SUMS).read_text(encoding="utf-8")))
    record = json.loads((Path(args.directory) / signing.SIGNATURE).read_text(encoding="utf-8"))
    approvals = sorted((Path(args.directory) / signing.APPROVALS).glob("*.json"))
    print(
        f"evidence pack {args.directory}: OK ({count} files verified; "
        f"pack digest {pack_digest(args.directory)}; signed by key {record['fingerprint']}"
        f"{'' if args.fingerprint else ' (compare it with the fingerprint published for the run)'}; "
        f"{len(approvals)} approval(s))"
    )
    return 0


def _approve(pack: Path, approver: str, statement: str) -> int:
    """Sign an approver statement over an intact pack's digest; refuse a pack that does not verify."""
    try:
        key = signing.load_signing_key()
    except signing.SigningKeyError as exc:
        print(f"approve: {exc}", file=sys.stderr)
        return 2
    if key is None:
        print(f"approve: no key: set ${signing.KEY_FILE_ENV} or ${signing.KEY_ENV}", file=sys.stderr)
        return 2
    problems = verify_pack(pack)
    if problems:
        print(f"approve: refused, the pack does not verify: {'; '.join(map(str, problems))}", file=sys.stderr)
        return 1
    out = signing.approve(pack, pack_digest(pack), approver, key, statement)
    print(f"approved by {approver} with key {signing.fingerprint(key)}: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
