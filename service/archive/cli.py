"""`genvault archive copy --to URL`, `genvault archive upgrade` and `genvault export --bag
DIR`: the commands around service/archive/copy.py, upgrade.py and export.py."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from service.archive.copy import ArchiveCopier, Progress
from service.errors import ConfigError


def _progress() -> Progress:
    last = 0.0

    def progress(done: int, total: int, key: str, outcome: str) -> None:
        nonlocal last
        now = time.monotonic()
        if outcome in ("conflict", "failed"):
            print(f"{outcome}: {key}", file=sys.stderr)
        if now - last >= 2 or done == total:
            last = now
            print(f"{done}/{total} objects", file=sys.stderr, flush=True)

    return progress


def cmd_copy(args: argparse.Namespace, settings_factory: Callable[[], Any]) -> int:
    from service.wiring import build_store

    settings = settings_factory()
    source = build_store(settings)
    target = build_store(settings.model_copy(update={"archive_url": args.to}))
    if source.uri("k") == target.uri("k"):
        raise ConfigError("--to names the archive being copied (GENVAULT_ARCHIVE_URL)")
    # The URLs as given: parse_archive_url refuses any that carries credentials.
    print(f"copying {settings.archive_url} to {args.to}", file=sys.stderr)
    report = ArchiveCopier(source, target, progress=_progress()).run()
    print(
        f"copied {report.copied} ({report.bytes_copied} bytes), skipped {report.skipped} "
        f"already there, conflicts {len(report.conflicts)}, failed {len(report.failed)}, "
        # Gone from the source during the pass; removed here after a tombstone of the source.
        f"vanished {report.vanished}, erased {len(report.erased)}"
    )
    if report.conflicts:
        print(
            "conflicts: these keys hold other bytes at the destination and were left alone",
            file=sys.stderr,
        )
    return 0 if report.ok else 1


def _date(flag: str, text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{flag} wants a date like 2026-01-31, got {text!r}") from None


def cmd_export(args: argparse.Namespace, settings_factory: Callable[[], Any]) -> int:
    from service.archive.export import Selection, export_bag
    from service.db.session import Database, make_engine
    from service.wiring import build_store

    if bool(args.job) == bool(args.date_from or args.date_to):
        raise ConfigError("name jobs with --job, or a range with --from and --to (not both)")
    if not args.job and not (args.date_from and args.date_to):
        raise ConfigError("a range needs both --from and --to")
    selection = Selection(
        job_ids=tuple(dict.fromkeys(args.job or ())),
        first=_date("--from", args.date_from),
        last=_date("--to", args.date_to),
        project=args.project,
    )
    settings = settings_factory()
    db = Database(make_engine(settings.database_url))
    try:
        report = export_bag(
            db,
            build_store(settings),
            selection,
            Path(args.bag),
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    finally:
        db.dispose()
    print(
        f"bag written to {args.bag}: {len(report.jobs)} jobs, {report.files} files, "
        f"{report.bytes} bytes; skipped {len(report.skipped)}"
    )
    return 0


def cmd_upgrade(settings_factory: Callable[[], Any]) -> int:
    from service.archive.upgrade import Upgrader
    from service.db.session import Database, make_engine
    from service.security.signing import signer_from_settings
    from service.wiring import build_store

    settings = settings_factory()
    db = Database(make_engine(settings.database_url))

    def progress(done: int, total: int, job_id: str, outcome: str) -> None:
        if outcome.startswith("refused"):
            print(f"{job_id}: {outcome}", file=sys.stderr)
        print(f"{done}/{total} jobs", file=sys.stderr, flush=True)

    try:
        report = Upgrader(
            db, build_store(settings), signer_from_settings(settings), progress=progress
        ).run()
    finally:
        db.dispose()
    print(
        f"upgraded {len(report.upgraded)} jobs to OCFL objects, {report.already} already "
        f"objects, refused {len(report.refused)}"
    )
    if report.deletable:
        print(
            "These directories of the earlier layouts are now copied into verified OCFL "
            "objects, and nothing reads them any more; delete them when you are satisfied:"
        )
        for prefix in report.deletable:
            print(f"  {prefix}/")
    return 0 if report.ok else 1


def add_parsers(sub: Any, settings_factory: Callable[[], Any]) -> None:
    a = sub.add_parser("archive", help="manage the archive as a whole")
    actions = a.add_subparsers(dest="action", required=True)
    c = actions.add_parser(
        "copy",
        help="copy every object to another archive, verified and resumable "
        "(never overwrites a different object)",
    )
    c.add_argument("--to", required=True, metavar="URL", help="file://PATH or s3://BUCKET[/PREFIX]")
    c.set_defaults(func=lambda args: cmd_copy(args, settings_factory))
    u = actions.add_parser(
        "upgrade",
        help="make every job of the earlier dated layouts an OCFL object (verified, "
        "resumable; deletes nothing, lists what may go)",
    )
    u.set_defaults(func=lambda args: cmd_upgrade(settings_factory))

    e = sub.add_parser(
        "export", help="write archived jobs as a BagIt bag (RFC 8493) for other archives' tools"
    )
    e.add_argument("--bag", required=True, metavar="DIR", help="a new or empty directory")
    e.add_argument("--job", action="append", metavar="ID", help="this job (repeatable)")
    e.add_argument(
        "--from", dest="date_from", metavar="DATE", help="jobs created on or after (YYYY-MM-DD)"
    )
    e.add_argument("--to", dest="date_to", metavar="DATE", help="jobs created on or before")
    e.add_argument("--project", metavar="SLUG", help="only jobs of this project")
    e.set_defaults(func=lambda args: cmd_export(args, settings_factory))
