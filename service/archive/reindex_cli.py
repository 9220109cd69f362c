"""`genvault reindex [--project SLUG] [--parallel N]`: the command around
service/archive/reindex.py."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from service.errors import ConfigError

# A bound against a slip of the keyboard: each job at once is a thread (and on S3 a connection).
MAX_PARALLEL = 64

if TYPE_CHECKING:
    from service.archive.reindex import Report
    from service.config import Settings
    from service.storage.base import ArchiveStore


def _progress() -> Callable[[int, Report], None]:
    """Counts every 2 s (each batch on a terminal); what is not imported, as it is found."""
    last = 0.0
    problems = incomplete = 0

    def progress(done: int, report: Report) -> None:
        nonlocal last, problems, incomplete
        for root in report.incomplete[incomplete:]:
            print(
                f"incomplete {root}: never committed (its archive did not finish)", file=sys.stderr
            )
        for problem in report.problems[problems:]:
            print(f"untrusted {problem.key}: {'; '.join(problem.reasons)}", file=sys.stderr)
        problems, incomplete = len(report.problems), len(report.incomplete)
        now = time.monotonic()
        if sys.stderr.isatty() or now - last >= 2 or done == report.total:
            last = now
            print(
                f"reindexed {done}/{report.total} jobs: {report.imported} imported, "
                f"{report.skipped} skipped (already in the database), {report.erased} erased, "
                f"{len(report.problems)} untrusted",
                file=sys.stderr,
                flush=True,
            )

    return progress


def run_reindex_cli(args: argparse.Namespace, settings: Settings, store: ArchiveStore) -> int:
    """``genvault reindex``; the store comes from the wiring (service.cli builds it)."""
    from service.access.store import SLUG
    from service.archive.reindex import reindex
    from service.db.session import Database, make_engine
    from service.security.signing import Verifier, signer_from_settings

    if args.project is not None and not SLUG.fullmatch(args.project):
        raise ConfigError(
            f"--project wants a project slug ([a-z0-9-]{{1,40}}), got {args.project!r}"
        )
    # As audit --bucket-only: --public-key, else the configured key's public half.
    if args.public_key:
        verifier = Verifier.from_base64(args.public_key)
    elif settings.signing_key is not None or settings.secret_key is not None:
        verifier = signer_from_settings(settings).verifier
    else:
        raise ConfigError(
            "reindex trusts only what the signing key verifies: set GENVAULT_SIGNING_KEY or "
            "GENVAULT_SECRET_KEY, or pass --public-key BASE64 (from `genvault signing-key`)"
        )
    if args.parallel is not None and not 1 <= args.parallel <= MAX_PARALLEL:
        raise ConfigError(f"--parallel wants 1 to {MAX_PARALLEL} jobs at once, got {args.parallel}")
    at_once = {} if args.parallel is None else {"parallel": args.parallel}
    db = Database(make_engine(settings.database_url))
    try:
        report = reindex(db, store, verifier, project=args.project, progress=_progress(), **at_once)
    finally:
        db.dispose()
    for problem in report.problems:
        print(json.dumps(asdict(problem)))
    print(
        f"{report.total} jobs in the archive: {report.imported} imported, {report.skipped} "
        f"already in the database, {report.erased} erased (recreated as deleted), "
        f"{len(report.problems)} not imported (untrusted), {len(report.incomplete)} incomplete",
        file=sys.stderr,
    )
    return 0 if report.ok else 1


def add_parsers(sub: Any, handler: Callable[[argparse.Namespace], int]) -> None:
    r = sub.add_parser(
        "reindex",
        help="rebuild jobs and assets from the archive alone (after `migrate` on a lost "
        "database); verifies every object first, resumable",
    )
    r.add_argument("--project", metavar="SLUG", help="only this project's jobs")
    r.add_argument(
        "--parallel",
        type=int,
        metavar="N",
        help="jobs checked at once (default 8): each waits on the store's round trips",
    )
    r.add_argument(
        "--public-key",
        metavar="BASE64",
        help="verify signatures with this Ed25519 public key (default: the configured key)",
    )
    r.set_defaults(func=handler)
