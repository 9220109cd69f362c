"""`genvault db copy --to URL` and `genvault prune [--older-than DURATION]`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from service.errors import ConfigError


def cmd_db_copy(args: argparse.Namespace, settings_factory: Callable[[], Any]) -> int:
    from service.db.copy import copy_database
    from service.db.session import make_engine

    settings = settings_factory()
    source = make_engine(settings.database_url)
    target = make_engine(args.to)
    if source.url == target.url:
        raise ConfigError("--to names the database being copied (GENVAULT_DATABASE_URL)")

    def progress(table: str, rows: int) -> None:
        print(f"{table}: {rows} rows", file=sys.stderr, flush=True)

    try:
        counts = copy_database(source, target, progress=progress)
    finally:
        source.dispose()
        target.dispose()
    width = max(len(c.table) for c in counts)
    for c in counts:
        print(f"{c.table:<{width}}  {c.source:>9} source  {c.target:>9} target")
    print("counts match: every row copied")
    return 0


def cmd_prune(args: argparse.Namespace, settings_factory: Callable[[], Any]) -> int:
    from service.db.retention import parse_duration, prune
    from service.db.session import Database, make_engine

    settings = settings_factory()
    if args.older_than:
        older_than = parse_duration(args.older_than)
    elif settings.retention_days > 0:
        older_than = timedelta(days=settings.retention_days)
    else:
        raise ConfigError(
            "retention is off (GENVAULT_RETENTION_DAYS=0); name a window with --older-than 30d"
        )
    db = Database(make_engine(settings.database_url))
    try:
        removed = prune(db, older_than)
    finally:
        db.dispose()
    for table, count in removed.items():
        print(f"{table}: {count} removed")
    return 0


def add_parsers(sub: Any, settings_factory: Callable[[], Any]) -> None:
    d = sub.add_parser("db", help="move the database as a whole")
    actions = d.add_subparsers(dest="action", required=True)
    c = actions.add_parser(
        "copy", help="copy every row into an empty, migrated database, and check the counts"
    )
    c.add_argument("--to", required=True, metavar="DATABASE_URL", help="the target database")
    c.set_defaults(func=lambda args: cmd_db_copy(args, settings_factory))

    p = sub.add_parser(
        "prune",
        help="remove finished tasks, unneeded callbacks and old events (GENVAULT_RETENTION_DAYS)",
    )
    p.add_argument(
        "--older-than",
        metavar="DURATION",
        help="like 30d, 12h or 90m (default: GENVAULT_RETENTION_DAYS days)",
    )
    p.set_defaults(func=lambda args: cmd_prune(args, settings_factory))
