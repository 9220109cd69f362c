"""`genvault audit [--bucket-only]`: the command around service/archive/audit.py."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime

from service.archive.audit import (
    ACCEPTABLE_SIGNATURES,
    JobAudit,
    Progress,
    run_audit,
    run_bucket_audit,
)
from service.config import Settings
from service.errors import ConfigError
from service.security.signing import Verifier, signer_from_settings
from service.storage.base import ArchiveStore


def _verifier(args: argparse.Namespace, settings: Settings) -> Verifier | None:
    """--public-key, else the configured signing key; None when there is neither."""
    if args.public_key:
        return Verifier.from_base64(args.public_key)
    if settings.signing_key is not None or settings.secret_key is not None:
        return signer_from_settings(settings).verifier
    return None


def _progress() -> Progress:
    last = 0.0

    def progress(done: int, total: int, problems: int) -> None:
        nonlocal last
        now = time.monotonic()
        if sys.stderr.isatty() or now - last >= 5 or done == total:
            last = now
            print(f"audited {done}/{total} jobs, {problems} with problems", file=sys.stderr)

    return progress


def run_audit_cli(args: argparse.Namespace, settings: Settings, store: ArchiveStore) -> int:
    """``genvault audit``; the store comes from the wiring (service.cli builds it)."""
    from service.db.session import Database, make_engine

    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since).replace(tzinfo=UTC)
        except ValueError:
            print(
                f"genvault audit: --since wants a date like 2026-01-31, got {args.since!r}",
                file=sys.stderr,
            )
            return 2
    verifier = _verifier(args, settings)
    if args.bucket_only:
        if verifier is None:
            raise ConfigError(
                "audit --bucket-only needs a public key: --public-key BASE64"
                " (from `genvault signing-key` or GET /v1/signing-key)"
            )
        reports = run_bucket_audit(store, verifier, progress=_progress())
    else:
        if verifier is None:
            print(
                "genvault audit: no signing key configured; signatures not checked"
                " (pass --public-key)",
                file=sys.stderr,
            )
        db = Database(make_engine(settings.database_url))
        try:
            reports = run_audit(
                db, store, verifier=verifier, since=since, job_id=args.job, progress=_progress()
            )
        finally:
            db.dispose()
    return _summarise(reports, quiet=args.quiet)


def _summarise(reports: list[JobAudit], *, quiet: bool) -> int:
    bad = [r for r in reports if not r.ok]
    for report in bad if quiet else reports:
        print(json.dumps(report.as_json()))
    checked = sum(r.checked for r in reports)
    unsigned = sum(1 for r in bad if r.signature not in ACCEPTABLE_SIGNATURES)
    print(
        f"{len(reports)} jobs, {checked} objects checked: {len(bad)} jobs with problems "
        f"({sum(len(r.missing) for r in bad)} missing, {sum(len(r.altered) for r in bad)} altered,"
        f" {sum(len(r.unlisted) for r in bad)} unlisted, {unsigned} bad signatures)",
        file=sys.stderr,
    )
    return 1 if bad else 0
