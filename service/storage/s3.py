"""An ArchiveStore on S3 or any S3-compatible service; the only importer of boto3.

Every object goes up with its SHA-256 (``ChecksumSHA256``, checked by the server) and
``If-None-Match: *`` (refused with 412 when the key exists), so a replayed callback never
overwrites an archived image. botocore errors are translated here into the storage errors
of ``service.storage.base``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import io
import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn
from urllib.parse import quote, unquote, urlsplit

import boto3
import botocore.auth
import botocore.compat
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    IncompleteReadError,
)

from service.errors import ConfigError
from service.storage.base import (
    ObjectExists,
    ObjectInfo,
    ObjectMissing,
    Retention,
    StorageError,
    StorageUnavailable,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3's floor for every part but the last
MAX_PARTS = 10_000
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4 presigned URLs cannot live longer
CHUNK = MIB

# Standard mode retries throttling, 5xx and connection errors with backoff; what is still
# failing after that becomes StorageUnavailable and the task queue retries it later.
CLIENT_CONFIG = Config(
    # SigV4 also for presigned URLs (botocore may otherwise presign with legacy SigV2).
    signature_version="s3v4",
    connect_timeout=5,
    read_timeout=60,
    retries={"max_attempts": 5, "mode": "standard"},
)

_MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_EXISTS_CODES = frozenset({"PreconditionFailed", "412"})
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        # A concurrent conditional write to the same key is in flight; a retry gets the 412.
        "ConditionalRequestConflict",
    }
)


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def _file_sha256(path: Path) -> str:
    with path.open("rb") as src:
        return hashlib.file_digest(src, "sha256").hexdigest()


# What an S3-compatible store answers for an API it does not have.
_UNSUPPORTED_CODES = frozenset({"NotImplemented", "501"})


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _raise_translated(exc: Exception, action: str, key: str | None = None) -> NoReturn:
    """Raise the storage error for a botocore failure; messages carry codes, never secrets."""
    where = f"S3 {action}" + (f" {key!r}" if key is not None else "")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        detail = f"{where}: {code or 'error'} (HTTP {status})"
        if key is not None and (code in _MISSING_CODES or status == 404):
            raise ObjectMissing(detail) from exc
        if code in _EXISTS_CODES or status == 412:
            raise ObjectExists(f"{where}: the key already exists") from exc
        if code in _TRANSIENT_CODES or status == 429 or status >= 500:
            raise StorageUnavailable(detail) from exc
        raise StorageError(detail) from exc
    if isinstance(exc, ConnectionError | HTTPClientError | IncompleteReadError):
        raise StorageUnavailable(f"{where}: {type(exc).__name__}") from exc
    raise StorageError(f"{where}: {type(exc).__name__}") from exc


class _S3Reader(io.RawIOBase):
    """A GetObject body whose read errors arrive as storage errors, not botocore's."""

    def __init__(self, body: Any, key: str) -> None:
        self._body = body
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data: bytes = self._body.read(len(view))
        except (BotoCoreError, ClientError) as exc:
            _raise_translated(exc, "read", self._key)
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


# The query of a SigV4 presigned GET as botocore writes it (signature last); the security
# token only with temporary credentials.
_PRESIGN_QUERY = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
)
_PRESIGN_PROBE = "genvault-presign-probe"


def _quote(value: str) -> str:
    """botocore's percent_encode of a query value."""
    return quote(value.encode(), safe="-_.~")


# What quote(key, safe="/~") leaves alone: unreserved characters and the slash.
_PATH_UNSAFE = re.compile(r"[^A-Za-z0-9_.~/-]")


def _escape(match: re.Match[str]) -> str:
    return f"%{ord(match[0]):02X}"


def _quote_path(key: str) -> str:
    """``quote(key.encode(), safe="/~")``, in a third of the time for an ASCII key.

    quote looks up every byte in a table in Python (6 us for a key of ours, a quarter of
    a link's cost); an OCFL key's only unsafe characters are the three ``%`` of its
    encoded object id, so a regular expression finds them in C.
    """
    if key.isascii():
        return _PATH_UNSAFE.sub(_escape, key)
    return quote(key.encode(), safe="/~")


class _Presigner:
    """Presigned GETs, the very URLs botocore's generate_presigned_url would write, without
    its per-call machinery (endpoint rules, serialisation, events: ~0.25 ms a link, paid per
    output image of every job a list shows).

    Made from one URL botocore presigned (``probe``): its scheme, host and path up to the
    key, its signing region; and kept only if it writes that very URL again, signature and
    all (``from_probe``). Anything else (other query parameters, another signing scheme, a
    different key encoding) leaves it None and botocore signs every link.
    """

    def __init__(self, base: str, host: str, path: str, region: str, service: str) -> None:
        self._base = base  # scheme://netloc
        self._host = host  # the host header botocore signs (no default port)
        self._path = path  # the URL path up to the key (encoded)
        self._scope_tail = f"/{region}/{service}/aws4_request"
        self._region = region
        self._service = service
        # (secret, access key, day) -> the day's signing key and the encoded credential
        self._day: tuple[tuple[str, str, str], bytes, str] | None = None

    @classmethod
    def from_probe(cls, probe: str, key: str, credentials: Any) -> _Presigner | None:
        """``probe``: botocore's presigned GET of ``key`` (full key), with ``credentials``."""
        parts = urlsplit(probe)
        encoded = _quote_path(key)
        if parts.fragment or not parts.path.endswith(encoded) or credentials is None:
            return None
        pairs = [pair.partition("=") for pair in parts.query.split("&")]
        names = [name for name, _, _ in pairs]
        token = credentials.token is not None
        expected = [*_PRESIGN_QUERY, *(["X-Amz-Security-Token"] if token else [])]
        if names != [*expected, "X-Amz-Signature"]:
            return None
        values = {name: value for name, _, value in pairs}
        if values["X-Amz-Algorithm"] != "AWS4-HMAC-SHA256":
            return None
        if values["X-Amz-SignedHeaders"] != "host":
            return None
        scope = unquote(values["X-Amz-Credential"]).split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            return None
        host = parts.hostname or ""
        if ":" in host:  # IPv6
            host = f"[{host}]"
        if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
            host = f"{host}:{parts.port}"
        presigner = cls(
            f"{parts.scheme}://{parts.netloc}",
            host,
            parts.path[: len(parts.path) - len(encoded)],
            scope[2],
            scope[3],
        )
        again = presigner.sign(key, int(values["X-Amz-Expires"]), credentials, values["X-Amz-Date"])
        return presigner if again == probe else None

    def _for_day(self, credentials: Any, day: str) -> tuple[bytes, str]:
        """The signing key of ``day`` and the X-Amz-Credential value (both kept a day)."""
        which = (credentials.secret_key, credentials.access_key, day)
        cached = self._day
        if cached is not None and cached[0] == which:
            return cached[1], cached[2]
        signing = f"AWS4{credentials.secret_key}".encode()
        for part in (day, self._region, self._service, "aws4_request"):
            signing = hmac.new(signing, part.encode(), hashlib.sha256).digest()
        credential = _quote(f"{credentials.access_key}/{day}{self._scope_tail}")
        self._day = (which, signing, credential)
        return signing, credential

    def sign(self, key: str, expires: int, credentials: Any, timestamp: str) -> str:
        """The presigned GET of ``key`` (full key) at ``timestamp`` (SigV4's format)."""
        path = self._path + _quote_path(key)
        signing, credential = self._for_day(credentials, timestamp[:8])
        query = (
            f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={credential}"
            f"&X-Amz-Date={timestamp}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host"
        )
        canonical_query = query
        if credentials.token is not None:
            token = f"&X-Amz-Security-Token={_quote(credentials.token)}"
            query += token
            # Sorted by name: the token comes before SignedHeaders.
            head, _, signed = canonical_query.rpartition("&")
            canonical_query = f"{head}{token}&{signed}"
        canonical = f"GET\n{path}\n{canonical_query}\nhost:{self._host}\n\nhost\nUNSIGNED-PAYLOAD"
        to_sign = (
            f"AWS4-HMAC-SHA256\n{timestamp}\n{timestamp[:8]}{self._scope_tail}\n"
            + hashlib.sha256(canonical.encode()).hexdigest()
        )
        signature = hmac.digest(signing, to_sign.encode(), "sha256").hex()
        return f"{self._base}{path}?{query}&X-Amz-Signature={signature}"


class S3Store:
    """Write-once archive in ``bucket`` under ``prefix``; keys given to it are relative."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: S3Client | None = None,
        sse: str | None = None,
        kms_key_id: str | None = None,
        storage_class: str | None = None,
        object_lock_mode: str | None = None,
        object_lock_days: int | None = None,
        multipart_threshold: int = 64 * MIB,
        part_size: int = 16 * MIB,
        connections: int = 10,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        if (object_lock_mode is None) != (object_lock_days is None):
            raise ConfigError(
                "S3 Object Lock needs both GENVAULT_S3_OBJECT_LOCK_MODE and "
                "GENVAULT_S3_OBJECT_LOCK_DAYS"
            )
        self.bucket = bucket
        prefix = prefix.strip("/")
        self._prefix = f"{prefix}/" if prefix else ""
        # boto3 reads credentials, region and AWS_ENDPOINT_URL_S3 from the environment.
        # ``connections``: as many as uploads can run at once. Past its pool, urllib3 opens
        # a connection for the request and discards it afterwards, so every upload over the
        # count pays a new TCP (and TLS) handshake.
        config = CLIENT_CONFIG.merge(Config(max_pool_connections=connections))
        self._client: S3Client = client or boto3.client("s3", config=config)
        self._sse = sse
        self._kms_key_id = kms_key_id
        self._storage_class = storage_class
        self._lock_mode = object_lock_mode
        self._lock_days = object_lock_days
        self._multipart_threshold = multipart_threshold
        self._part_size = part_size
        # Made on the first url(); None after that: botocore signs every link.
        self._presigner: _Presigner | None = None
        self._presigner_made = False
        self._presigner_plain = True  # the probe's credentials had no session token

    def _full(self, key: str) -> str:
        return self._prefix + key

    def uri(self, key: str) -> str:
        # Unencoded, as the AWS CLI and boto3 users write S3 URIs.
        return f"s3://{self.bucket}/{self._full(key)}"

    def _write_options(
        self, sha256: str, content_type: str, metadata: Mapping[str, str]
    ) -> dict[str, Any]:
        """Arguments shared by PutObject and CreateMultipartUpload."""
        options: dict[str, Any] = {
            "ContentType": content_type,
            # The whole-file digest rides in metadata because a multipart object's own
            # checksum is a checksum of part checksums, not the file's SHA-256.
            "Metadata": {**metadata, "sha256": sha256},
            # Also the header S3 (and Object Lock) want announcing a flexible checksum.
            "ChecksumAlgorithm": "SHA256",
        }
        if self._sse:
            options["ServerSideEncryption"] = self._sse
        if self._kms_key_id:
            options["SSEKMSKeyId"] = self._kms_key_id
        if self._storage_class:
            options["StorageClass"] = self._storage_class
        if self._lock_mode and self._lock_days:
            options["ObjectLockMode"] = self._lock_mode
            options["ObjectLockRetainUntilDate"] = datetime.now(UTC) + timedelta(
                days=self._lock_days
            )
        return options

    def put_file(
        self,
        key: str,
        path: Path,
        *,
        sha256: str,
        content_type: str,
        metadata: Mapping[str, str],
    ) -> None:
        """Upload ``path`` streaming (multipart above the threshold), only if ``key`` is free."""
        sha256 = sha256.lower()
        # S3 refuses a wrong ChecksumSHA256 itself, but not every S3-compatible server does
        # (moto does not); one local read makes the guarantee independent of the backend.
        if _file_sha256(path) != sha256:
            raise StorageError(f"SHA-256 mismatch for archive key {key!r}; nothing stored")
        size = path.stat().st_size
        options = self._write_options(sha256, content_type, metadata)
        if size > self._multipart_threshold:
            self._put_multipart(key, path, size, sha256, options)
            return
        with path.open("rb") as body:
            self._put_object(key, body, sha256, options)

    def put_bytes(
        self, key: str, data: bytes, *, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        """Store small ``data`` under ``key``, write-once."""
        sha256 = hashlib.sha256(data).hexdigest()
        self._put_object(key, data, sha256, self._write_options(sha256, content_type, metadata))

    def _put_object(
        self, key: str, body: BinaryIO | bytes, sha256: str, options: dict[str, Any]
    ) -> None:
        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=self._full(key),
                Body=body,
                ChecksumSHA256=_b64(sha256),
                IfNoneMatch="*",
                **options,
            )
        except (BotoCoreError, ClientError) as exc:
            _raise_translated(exc, "put", key)

    def _put_multipart(
        self, key: str, path: Path, size: int, sha256: str, options: dict[str, Any]
    ) -> None:
        full = self._full(key)
        part_size = max(self._part_size, math.ceil(size / MAX_PARTS))
        try:
            upload_id = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=full, **options
            )["UploadId"]
        except (BotoCoreError, ClientError) as exc:
            _raise_translated(exc, "create multipart upload", key)
        try:
            parts: list[CompletedPartTypeDef] = []
            whole = hashlib.sha256()
            with path.open("rb") as src:
                # One part in memory at a time: bounded by part_size, never the whole file.
                while chunk := src.read(part_size):
                    whole.update(chunk)
                    part_b64 = base64.b64encode(hashlib.sha256(chunk).digest()).decode()
                    number = len(parts) + 1
                    answer = self._client.upload_part(
                        Bucket=self.bucket,
                        Key=full,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=chunk,
                        ChecksumAlgorithm="SHA256",
                        ChecksumSHA256=part_b64,
                    )
                    parts.append(
                        {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": part_b64}
                    )
            if whole.hexdigest() != sha256:
                # The file changed after it was checked; what went up is not what was promised.
                raise StorageError(f"SHA-256 mismatch for archive key {key!r}; nothing stored")
            self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except BaseException as exc:
            self._abort(full, upload_id)
            if isinstance(exc, BotoCoreError | ClientError):
                _raise_translated(exc, "multipart upload", key)
            raise

    def _abort(self, full_key: str, upload_id: str) -> None:
        # Best effort: a failed abort leaves parts that a bucket lifecycle rule
        # (AbortIncompleteMultipartUpload) cleans up; the original error matters more.
        with contextlib.suppress(BotoCoreError, ClientError):
            self._client.abort_multipart_upload(
                Bucket=self.bucket, Key=full_key, UploadId=upload_id
            )

    def head(self, key: str) -> ObjectInfo:
        """Describe the object; ``sha256`` from its metadata, else its full-object checksum."""
        try:
            answer = self._client.head_object(
                Bucket=self.bucket, Key=self._full(key), ChecksumMode="ENABLED"
            )
        except (BotoCoreError, ClientError) as exc:
            _raise_translated(exc, "head", key)
        metadata = dict(answer.get("Metadata", {}))
        sha256 = metadata.pop("sha256", None) or self._full_object_sha256(answer)
        return ObjectInfo(
            key=key,
            size=answer["ContentLength"],
            sha256=sha256,
            content_type=answer.get("ContentType"),
            metadata=metadata,
        )

    @staticmethod
    def _full_object_sha256(answer: Mapping[str, Any]) -> str | None:
        checksum = answer.get("ChecksumSHA256")
        # A composite (multipart) checksum reads "<base64>-<parts>" and is no file digest.
        if not checksum or "-" in checksum or answer.get("ChecksumType") == "COMPOSITE":
            return None
        try:
            return base64.b64decode(checksum, validate=True).hex()
        except binascii.Error:
            return None

    def open(self, key: str) -> BinaryIO:
        """Stream the object's bytes; raises ObjectMissing."""
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self._full(key))
        except (BotoCoreError, ClientError) as exc:
            _raise_translated(exc, "get", key)
        return io.BufferedReader(_S3Reader(answer["Body"], key), buffer_size=CHUNK)

    def iter_keys(self, prefix: str) -> Iterator[str]:
        """Keys starting with ``prefix``, in lexicographic order (S3 lists in UTF-8 order)."""
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._full(prefix)
        )
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"][len(self._prefix) :]
        except (BotoCoreError, ClientError) as exc:
            _raise_translated(exc, f"list {prefix!r}")

    def versioned_keys(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix`` of which any version is stored, current or not, in order.

        More than ``iter_keys`` on a versioned bucket: a key deleted without a version id
        (a delete marker on top) still holds its older versions, and erasure removes them too.
        """
        seen: str | None = None
        for item in self._version_items(self._full(prefix), f"list versions {prefix!r}"):
            key = item["Key"][len(self._prefix) :]
            if key != seen:
                seen = key
                yield key

    def _version_items(self, full_prefix: str, action: str) -> Iterator[dict[str, Any]]:
        """Versions and delete markers under ``full_prefix`` (markers flagged ``marker``)."""
        pages = self._client.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Prefix=full_prefix
        )
        try:
            for page in pages:
                items: list[dict[str, Any]] = [dict(v) for v in page.get("Versions", [])]
                items += [{**m, "marker": True} for m in page.get("DeleteMarkers", [])]
                yield from sorted(items, key=lambda item: str(item["Key"]))
        except ClientError as exc:
            if _code(exc) not in _UNSUPPORTED_CODES:
                _raise_translated(exc, action)
            # A store without versions at all (R2, say, has no ListObjectVersions): every
            # object is its one and only version.
            for key in self.iter_keys(full_prefix[len(self._prefix) :]):
                yield {"Key": self._full(key), "VersionId": "null", "IsLatest": True, "plain": 1}
        except BotoCoreError as exc:
            _raise_translated(exc, action)

    def _versions_of(self, key: str) -> list[dict[str, Any]]:
        """Every version and delete marker of exactly ``key`` (its name is also a prefix)."""
        full = self._full(key)
        return [v for v in self._version_items(full, f"list versions {key!r}") if v["Key"] == full]

    def retention(self, key: str) -> Retention | None:
        """Object Lock over the object's versions: the latest date any is retained until.

        HeadObject per version rather than GetObjectRetention: it answers on any bucket (one
        without Object Lock too) and carries the legal hold as well.
        """
        now = datetime.now(UTC)
        until: datetime | None = None
        mode: str | None = None
        held = False
        for version in self._versions_of(key):
            if version.get("marker"):
                continue
            vid = str(version["VersionId"])
            # An unversioned object's id is "null"; the current one is simply the object.
            current = vid == "null" and bool(version.get("IsLatest"))
            try:
                if current:
                    answer = self._client.head_object(Bucket=self.bucket, Key=self._full(key))
                else:
                    answer = self._client.head_object(
                        Bucket=self.bucket, Key=self._full(key), VersionId=vid
                    )
            except (BotoCoreError, ClientError) as exc:
                _raise_translated(exc, "head version", key)
            retained = answer.get("ObjectLockRetainUntilDate")
            if retained is not None and retained > now and (until is None or retained > until):
                until, mode = retained, answer.get("ObjectLockMode")
            held = held or answer.get("ObjectLockLegalHoldStatus") == "ON"
        if until is None and not held:
            return None
        return Retention(key=key, until=until, mode=mode, legal_hold=held)

    def delete(self, key: str) -> None:
        """Delete every version and delete marker of ``key``, each by its version id.

        A plain DeleteObject on a versioned bucket only hides the object behind a delete
        marker; erasure must leave nothing. A version under Object Lock is refused by S3
        (AccessDenied): StorageError, with the versions before it already gone.
        """
        for version in self._versions_of(key):
            try:
                if version.get("plain"):
                    self._client.delete_object(Bucket=self.bucket, Key=self._full(key))
                else:
                    self._client.delete_object(
                        Bucket=self.bucket, Key=self._full(key), VersionId=str(version["VersionId"])
                    )
            except (BotoCoreError, ClientError) as exc:
                _raise_translated(exc, "delete", key)

    def url(self, key: str, expires_in: int) -> str:
        """A presigned GET, valid for ``expires_in`` seconds clamped to SigV4's 7 days.

        The URL botocore's generate_presigned_url writes, signed here (_Presigner) once one
        such URL has shown how; otherwise by botocore.
        """
        expires = min(max(1, expires_in), MAX_PRESIGN_SECONDS)
        if not self._presigner_made:
            self._presigner = self._make_presigner(expires)
            self._presigner_made = True
        presigner = self._presigner
        full = self._full(key)
        # An empty key is botocore's to refuse.
        credentials = self._credentials() if presigner is not None and full else None
        if presigner is not None and credentials is not None:
            # What botocore would read now: the time, the (maybe refreshed) credentials.
            now = botocore.compat.get_current_datetime()
            frozen = credentials.get_frozen_credentials()
            if (frozen.token is None) == self._presigner_plain:
                timestamp = now.strftime(botocore.auth.SIGV4_TIMESTAMP)
                return presigner.sign(full, expires, frozen, timestamp)
        return self._botocore_url(key, expires)

    def _botocore_url(self, key: str, expires: int) -> str:
        try:
            return self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._full(key)},
                ExpiresIn=expires,
            )
        except (BotoCoreError, ClientError) as exc:
            _raise_translated(exc, "presign", key)

    def _credentials(self) -> Any:
        """The client's credentials (a private botocore interface; None without it)."""
        get = getattr(self._client, "_get_credentials", None)
        return get() if get is not None else None

    def _make_presigner(self, expires: int) -> _Presigner | None:
        """From one URL botocore presigns; None (botocore signs them all) where that fails
        or the URL is not one _Presigner writes identically."""
        credentials = self._credentials()
        if credentials is None:
            return None
        frozen = credentials.get_frozen_credentials()
        self._presigner_plain = frozen.token is None
        key = self._full(_PRESIGN_PROBE)
        try:
            probe = self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires
            )
        except (BotoCoreError, ClientError):
            return None
        return _Presigner.from_probe(probe, key, frozen)

    def check(self) -> None:
        """HeadBucket: the bucket exists and the credentials reach it."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            _raise_translated(exc, "head bucket")
