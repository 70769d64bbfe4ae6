"""One S3 region: verified multipart uploads, hashed downloads, listings, with errors that name the region."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from bridge.backup.config import S3Target
from bridge.backup.errors import (
    BackupError,
    BackupNotFoundError,
    BucketNotFoundError,
    RegionUnavailableError,
    VerificationError,
)

log = logging.getLogger("bridge.backup.s3")
READ_BLOCK = 1024 * 1024


class ObjectNotFoundError(BackupError):
    """An object key is absent from a region."""

    def __init__(self, message: str, *, region: str, key: str) -> None:
        super().__init__(message)
        self.region = region
        self.key = key


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object."""

    key: str
    size: int
    last_modified: datetime


class RegionStore:
    """A bucket in one region; every failure becomes a BackupError subclass naming the region."""

    def __init__(self, target: S3Target, *, part_size: int = 8 * 1024 * 1024) -> None:
        self.target = target
        self.part_size = max(part_size, 5 * 1024 * 1024)
        self._client = target.client()

    @property
    def name(self) -> str:
        """The region name."""
        return self.target.name

    @contextmanager
    def _errors(self, action: str, key: str | None = None) -> Iterator[None]:
        """Translate botocore failures into errors that say which region, bucket and object."""
        where = f"{action} {key!r} in " if key else f"{action} in "
        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket" or (code in ("404", "NotFound") and key is None):
                raise BucketNotFoundError(
                    f"bucket {self.target.bucket!r} does not exist in {self.target.describe()}",
                    region=self.name,
                    bucket=self.target.bucket,
                ) from None
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectNotFoundError(
                    f"object {key!r} not found in {self.target.describe()}", region=self.name, key=key or ""
                ) from None
            raise BackupError(
                f"{where}{self.target.describe()} failed: {code or status} "
                f"{exc.response.get('Error', {}).get('Message', '')}".rstrip()
            ) from exc
        except (BotoConnectionError, BotoCoreError) as exc:
            cause = type(exc).__name__
            raise RegionUnavailableError(
                f"{self.target.describe()} is unreachable while trying to {action}: {cause} "
                f"(timeouts {self.target.connect_timeout_s:g}s connect / "
                f"{self.target.read_timeout_s:g}s read, "
                f"{self.target.max_attempts} attempts)",
                region=self.name,
                endpoint=self.target.endpoint_url,
                cause=cause,
            ) from None

    def check(self) -> None:
        """Fail with BucketNotFoundError or RegionUnavailableError unless the bucket answers."""
        with self._errors("check the bucket"):
            self._client.head_bucket(Bucket=self.target.bucket)

    def put_bytes(self, key: str, data: bytes, *, metadata: dict[str, str] | None = None) -> None:
        """Write a small object and read it back to verify its SHA256."""
        sha = hashlib.sha256(data).hexdigest()
        with self._errors("write", key):
            self._client.put_object(
                Bucket=self.target.bucket, Key=key, Body=data, Metadata={"sha256": sha, **(metadata or {})}
            )
        self.verify(key, sha, len(data))

    def put_file(self, key: str, path: Path, *, sha256: str, metadata: dict[str, str] | None = None) -> None:
        """Upload a file (multipart above one part), then read it back to verify its SHA256."""
        size = path.stat().st_size
        meta = {"sha256": sha256, **(metadata or {})}
        if size <= self.part_size:
            with self._errors("write", key):
                self._client.put_object(
                    Bucket=self.target.bucket, Key=key, Body=path.read_bytes(), Metadata=meta
                )
        else:
            self._multipart(key, path, meta)
        self.verify(key, sha256, size)

    def _multipart(self, key: str, path: Path, meta: dict[str, str]) -> None:
        """Multipart upload; aborted on any failure, so no half object can ever become visible."""
        with self._errors("start a multipart upload of", key):
            upload_id = self._client.create_multipart_upload(
                Bucket=self.target.bucket, Key=key, Metadata=meta
            )["UploadId"]
        done = False
        try:
            parts: list[dict[str, Any]] = []
            with path.open("rb") as fh, self._errors("upload a part of", key):
                number = 1
                while block := fh.read(self.part_size):
                    etag = self._client.upload_part(
                        Bucket=self.target.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=block
                    )["ETag"]
                    parts.append({"PartNumber": number, "ETag": etag})
                    number += 1
            with self._errors("complete the multipart upload of", key):
                self._client.complete_multipart_upload(
                    Bucket=self.target.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
            done = True
        finally:
            if not done:
                self._abort(key, upload_id)

    def _abort(self, key: str, upload_id: str) -> None:
        """Abort an unfinished multipart upload; a failure here is logged, the original error wins."""
        try:
            self._client.abort_multipart_upload(Bucket=self.target.bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError) as exc:
            log.warning(
                "could not abort multipart upload of %s in %s: %s (reconcile will)", key, self.name, exc
            )

    def verify(self, key: str, sha256: str, size: int) -> None:
        """Read the remote object back and compare its SHA256 and size."""
        got_sha, got_size = self.hash_object(key)
        if got_sha != sha256 or got_size != size:
            raise VerificationError(
                f"remote copy of {key!r} in {self.target.describe()} does not match what was uploaded "
                f"(sha256 {got_sha[:16]}…/{got_size} B, expected {sha256[:16]}…/{size} B)",
                reason="remote_checksum_mismatch",
                region=self.name,
            )

    def hash_object(self, key: str) -> tuple[str, int]:
        """Stream an object and return (SHA256, size) without storing it."""
        h = hashlib.sha256()
        size = 0
        with self._errors("read", key):
            body = self._client.get_object(Bucket=self.target.bucket, Key=key)["Body"]
            for block in body.iter_chunks(READ_BLOCK):
                h.update(block)
                size += len(block)
        return h.hexdigest(), size

    def get_bytes(self, key: str) -> bytes:
        """Return a whole (small) object."""
        with self._errors("read", key):
            return bytes(self._client.get_object(Bucket=self.target.bucket, Key=key)["Body"].read())

    def download(self, key: str, out: BinaryIO) -> tuple[str, int]:
        """Copy an object into out, returning (SHA256, size) computed on the way."""
        h = hashlib.sha256()
        size = 0
        with self._errors("download", key):
            body = self._client.get_object(Bucket=self.target.bucket, Key=key)["Body"]
            for block in body.iter_chunks(READ_BLOCK):
                h.update(block)
                size += len(block)
                out.write(block)
        return h.hexdigest(), size

    def metadata(self, key: str) -> dict[str, str]:
        """Return the user metadata of an object."""
        with self._errors("inspect", key):
            return dict(self._client.head_object(Bucket=self.target.bucket, Key=key).get("Metadata", {}))

    def exists(self, key: str) -> bool:
        """Return whether an object exists."""
        try:
            self.metadata(key)
        except ObjectNotFoundError:
            return False
        return True

    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        """List every object under prefix, following pagination."""
        out: list[ObjectInfo] = []
        with self._errors(f"list {prefix!r}"):
            for page in self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.target.bucket, Prefix=prefix
            ):
                out.extend(
                    ObjectInfo(o["Key"], int(o["Size"]), o["LastModified"]) for o in page.get("Contents", [])
                )
        return out

    def delete(self, keys: list[str]) -> None:
        """Delete objects, 1000 per request; a per-key failure raises naming the key."""
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            with self._errors("delete objects"):
                resp = self._client.delete_objects(
                    Bucket=self.target.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            if resp.get("Errors"):
                first = resp["Errors"][0]
                raise BackupError(
                    f"could not delete {first.get('Key')!r} in {self.target.describe()}: "
                    f"{first.get('Code')} {first.get('Message', '')}"
                )

    def abort_stale_uploads(self, prefix: str) -> list[str]:
        """Abort every unfinished multipart upload under prefix; return their keys."""
        aborted: list[str] = []
        with self._errors("list multipart uploads"):
            uploads = self._client.list_multipart_uploads(Bucket=self.target.bucket, Prefix=prefix).get(
                "Uploads", []
            )
        for up in uploads:
            self._abort(up["Key"], up["UploadId"])
            aborted.append(up["Key"])
        return aborted


def require_backup(store: RegionStore, manifest_key: str, backup_id: str) -> bytes:
    """Return a manifest's bytes or raise BackupNotFoundError naming the region."""
    try:
        return store.get_bytes(manifest_key)
    except ObjectNotFoundError:
        raise BackupNotFoundError(
            f"backup {backup_id} has no manifest in {store.target.describe()} "
            "(never written there, or incomplete)",
            region=store.name,
            backup_id=backup_id,
        ) from None
