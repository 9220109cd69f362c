"""The job page's manifest: its content, its signature status and its digest."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from service.archive import audit as audit_checks
from service.db.models import Job
from service.security.signing import Verifier
from service.storage.base import ArchiveStore, StorageError


@dataclass(frozen=True)
class ManifestView:
    """The manifest as the job page shows it: its content, and whether it can be trusted."""

    content: Any = None
    error: str | None = None
    signature: str | None = None  # audit's wording: valid, missing, invalid: …, unsigned: …
    sha256: str | None = None  # of the bytes the store holds now
    recorded_sha256: str | None = None  # jobs.manifest_sha256, taken when it was written

    @property
    def signature_text(self) -> str:
        if self.signature == audit_checks.SIGNATURE_PREDATES:
            return "not signed (archived before signing)"
        return self.signature or ""

    @property
    def signature_ok(self) -> bool:
        return self.signature in audit_checks.ACCEPTABLE_SIGNATURES

    @property
    def digest_text(self) -> str:
        if self.sha256 is None:
            return ""
        if self.recorded_sha256 is None:
            return "no SHA-256 recorded (archived before signing)"
        if self.sha256 == self.recorded_sha256:
            return "matches the SHA-256 recorded when it was written"
        return f"differs from the SHA-256 recorded when it was written ({self.recorded_sha256})"

    @property
    def digest_ok(self) -> bool:
        return self.recorded_sha256 is None or self.sha256 == self.recorded_sha256


def read_manifest(store: ArchiveStore, verifier: Verifier, job: Job) -> ManifestView:
    """Read manifest.json once: show it, verify its signature, hash it (job page only)."""
    if not job.manifest_key:
        return ManifestView()
    try:
        with store.open(job.manifest_key) as stream:
            body = stream.read()
    except StorageError as exc:
        return ManifestView(error=f"could not read the manifest: {exc}")
    sha256 = hashlib.sha256(body).hexdigest()
    try:
        # The audit's own check, so the page and `genvault audit` never disagree.
        signature = audit_checks.signature_status(
            store,
            job.manifest_key,
            body,
            verifier,
            predates_signing=job.manifest_sha256 is None,
        )
    except StorageError as exc:
        signature = f"could not read the signature: {exc}"
    content: Any
    error: str | None = None
    try:
        content = json.loads(body)
    except ValueError:
        content, error = None, "the manifest is not JSON"
    return ManifestView(content, error, signature, sha256, job.manifest_sha256)
