"""The safe half of an export: temp folders, one sync, atomic renames, re-read checks, manifests."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bridge import fsformat
from bridge.errors import RollbackError
from bridge.rollback import folder as fs
from bridge.rollback.manifest import COMPANY_MANIFEST_SUFFIX, RUN_MANIFEST, CompanyManifest, RunManifest


@dataclass
class CompanyFiles:
    """One company folder, already encoded: creds.json bytes and (file name, key type, bytes) per key."""

    company_id: str
    creds: bytes
    keys: list[tuple[str, str, bytes]]


def utc_now() -> str:
    """Return the current UTC time in ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ExportWriter:
    """Writes company folders next to the target and makes them visible only once all are synced and checked.

    Use as: prepare(), add_company() per company, finish(); call abort() on any failure.
    """

    def __init__(self, out_dir: Path, *, force: bool, manifest: RunManifest) -> None:
        self.out_dir = Path(out_dir)
        self.force = force
        self.manifest = manifest
        self._temp: dict[str, Path] = {}
        self._placed: list[tuple[str, Path | None]] = []  # (company, previous folder moved aside)
        self._t0 = time.perf_counter()
        self._created_target = False

    def prepare(self) -> None:
        """Create the target, or refuse a non-empty one unless force; force drops the old run manifest."""
        out = self.out_dir
        if out.exists() and not out.is_dir():
            raise RollbackError(f"export target {out} exists and is not a directory")
        try:
            if not out.exists():
                out.mkdir(mode=fs.DIR_MODE, parents=True)
                self._created_target = True
            entries = sorted(os.listdir(out))
        except OSError as exc:
            raise RollbackError(
                f"export target {out} cannot be created or listed: {fs.describe_os_error(exc)}"
            ) from exc
        if entries and not self.force:
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise RollbackError(
                f"export target {out} is not empty ({len(entries)} entries: {shown}); "
                "choose an empty directory or pass --force to replace the companies being exported"
            )
        try:
            for name in entries:
                # Leftovers of a crashed run, and the old manifest: a new run must never look finished early.
                if name.startswith((fs.TEMP_PREFIX, fs.OLD_PREFIX)):
                    fs.remove_tree(out / name)
                elif name == RUN_MANIFEST:
                    (out / name).unlink()
            if not os.access(out, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied", str(out))
        except OSError as exc:
            raise RollbackError(f"export target {out} is not writable: {fs.describe_os_error(exc)}") from exc

    def add_company(self, files: CompanyFiles, company_manifest: CompanyManifest) -> None:
        """Write one company into a fresh temp folder in the target; record its hashes and counts."""
        t0 = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f"{fs.TEMP_PREFIX}{self.manifest.run_id}-", dir=self.out_dir))
        self._temp[files.company_id] = tmp
        hashes = fs.write_folder(tmp, files.creds, ((name, data) for name, _, data in files.keys))
        company_manifest.files = hashes
        company_manifest.counts = dict(Counter(key_type for _, key_type, _ in files.keys))
        company_manifest.bytes_written = len(files.creds) + sum(len(data) for _, _, data in files.keys)
        company_manifest.timings_s["write_s"] = time.perf_counter() - t0
        self.manifest.companies[files.company_id] = company_manifest

    def finish(self, expected_counts: dict[str, dict[str, int]]) -> RunManifest:
        """Sync once, rename every folder into place, re-read and verify, then write the manifests last."""
        timings = self.manifest.timings_s
        t = time.perf_counter()
        fs.sync_filesystem(self.out_dir)
        timings["sync_s"] = time.perf_counter() - t

        t = time.perf_counter()
        self._rename_into_place()
        timings["rename_s"] = time.perf_counter() - t

        t = time.perf_counter()
        problems = self._verify(expected_counts)
        timings["verify_s"] = time.perf_counter() - t
        if problems:
            raise ExportVerificationError(self.out_dir, problems)

        self.manifest.verified = True
        t = time.perf_counter()
        for cid, company in self.manifest.companies.items():
            path = self.out_dir / f"{cid}{COMPANY_MANIFEST_SUFFIX}"
            data = fs.write_json_atomic(path, company.to_json(), durable=False)
            self.manifest.company_manifest_sha256[cid] = fs.sha256_hex(data)
        fs.sync_filesystem(self.out_dir)  # one sync for all company manifests; the run manifest comes last
        timings["manifests_s"] = time.perf_counter() - t
        self.manifest.finished_at = utc_now()
        timings["total_s"] = time.perf_counter() - self._t0
        fs.write_json_atomic(self.out_dir / RUN_MANIFEST, self.manifest.to_json())
        return self.manifest

    def abort(self) -> None:
        """Remove this run's temp folders; if renaming was cut short, undo it. Safe to repeat."""
        errors: list[str] = []
        for tmp in self._temp.values():
            try:
                fs.remove_tree(tmp)
            except OSError as exc:
                errors.append(fs.describe_os_error(exc))
        self._temp.clear()
        for cid, previous in reversed(self._placed):
            try:
                fs.remove_tree(self.out_dir / cid)
                if previous is not None:
                    os.rename(previous, self.out_dir / cid)
            except OSError as exc:
                errors.append(fs.describe_os_error(exc))
        self._placed.clear()
        if self._created_target:
            with contextlib.suppress(OSError):  # rmdir only removes it while empty
                self.out_dir.rmdir()
        if errors:
            raise RollbackError(f"export cleanup left files behind in {self.out_dir}: {'; '.join(errors)}")

    def _rename_into_place(self) -> None:
        """Move each temp folder to DIR/<company>; an existing one is moved aside, then dropped."""
        for cid, tmp in list(self._temp.items()):
            final = self.out_dir / cid
            previous = None
            if final.exists() or final.is_symlink():
                previous = self.out_dir / f"{fs.OLD_PREFIX}{self.manifest.run_id}-{len(self._placed)}"
                os.rename(final, previous)
            self._placed.append((cid, previous))
            os.rename(tmp, final)
            del self._temp[cid]
        fs.fsync_dir(self.out_dir)
        # From here on the new folders stay, even if verification fails: no manifest marks them good.
        placed, self._placed = self._placed, []
        for _, previous in placed:
            if previous is not None:
                fs.remove_tree(previous)

    def _verify(self, expected_counts: dict[str, dict[str, int]]) -> list[str]:
        """Re-read every written file; compare hashes with what was encoded and counts with the source."""
        problems: list[str] = []
        for cid, company in self.manifest.companies.items():
            on_disk = fs.hash_folder(self.out_dir / cid)
            missing = sorted(set(company.files) - set(on_disk))
            extra = sorted(set(on_disk) - set(company.files))
            changed = sorted(n for n in set(on_disk) & set(company.files) if on_disk[n] != company.files[n])
            for label, names in (("missing", missing), ("unexpected", extra), ("checksum mismatch", changed)):
                if names:
                    problems.append(
                        f"{cid}: {label}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
                    )
            if fsformat.CREDS_FILE not in on_disk:
                problems.append(f"{cid}: creds.json is missing")
            # By prefix: a name that file_name did not make is reported above, as unexpected.
            counts = Counter(map(fsformat.key_type_of, on_disk))
            del counts[None]  # creds.json
            skipped = Counter(s.key_type for s in company.skipped)
            expected = {t: n - skipped.get(t, 0) for t, n in expected_counts.get(cid, {}).items()}
            expected = {t: n for t, n in expected.items() if n}
            if dict(counts) != expected or company.counts != expected:
                problems.append(
                    f"{cid}: key files per type {dict(counts)} differ from the source rows {expected}"
                )
        return problems


class ExportVerificationError(RollbackError):
    """The re-read export does not match the source; `problems` lists each difference."""

    def __init__(self, out_dir: Path, problems: list[str]) -> None:
        super().__init__(
            f"export in {out_dir} failed verification; no manifest.json was written, do not use it: "
            + "; ".join(problems[:10])
        )
        self.out_dir = out_dir
        self.problems = problems
