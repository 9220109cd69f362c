"""`genvault archive copy --to URL`: the command around service/archive/copy.py."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
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
        f"already there, conflicts {len(report.conflicts)}, failed {len(report.failed)}"
    )
    if report.conflicts:
        print(
            "conflicts: these keys hold other bytes at the destination and were left alone",
            file=sys.stderr,
        )
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
