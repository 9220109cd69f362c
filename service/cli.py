"""The `genvault` command (also `python -m service`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from service import __version__
from service.access import cli as access_cli
from service.archive import cli as archive_cli
from service.archive import reindex_cli
from service.db import cli as db_cli
from service.errors import ConfigError, GenvaultError
from service.events import cli as events_cli


def _settings(require_secrets: bool = True, *, local: bool = False, **overrides: Any) -> Any:
    """The settings; ``local`` commands also find the secret `genvault dev` keeps in var/."""
    from service.config import load_settings
    from service.security.local_secret import settings_for_local_cli

    if local:
        settings = settings_for_local_cli(**overrides)
    else:
        settings = load_settings(require_secrets=False, **overrides)
    if require_secrets:
        settings.require("secret_key")
    return settings


def cmd_migrate(_args: argparse.Namespace) -> int:
    from service.db.migrate import upgrade
    from service.db.session import make_engine

    settings = _settings(require_secrets=False)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    print("database is up to date")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from service.logs import configure
    from service.wiring import build

    settings = _settings()
    configure(settings.log_level, settings.log_json)
    container = build(settings)
    if settings.worker_metrics_port:
        from prometheus_client import start_http_server

        # The worker has no web server of its own; this one serves only /metrics.
        start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)
    worker = container.worker(concurrency=args.concurrency)
    with worker.signals_handled():
        worker.run()
    container.close()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    _settings()  # fail here, with one line, rather than inside every gunicorn worker
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:service.gunicorn_conf"]
    if args.bind:
        argv += ["--bind", args.bind]
    # gunicorn of this very environment, whether or not it is on PATH; a fixed argument list.
    os.execv(sys.executable, [*argv, "service.app:create_app()"])  # noqa: S606


def cmd_sandbox(args: argparse.Namespace) -> int:
    from service.sandbox.modes import ModeError, SandboxConfig
    from service.sandbox.server import serve

    try:
        config = SandboxConfig(webhook_delay=args.webhook_delay, modes=tuple(args.mode))
    except ModeError as exc:
        raise ConfigError(f"--mode: {exc}") from None
    modes = ", ".join(args.mode) or "none (prompt markers only)"
    print(f"sandbox provider on http://{args.host}:{args.port}; default modes: {modes}", flush=True)
    serve(args.host, args.port, config)
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from service.devserver import run_dev

    return run_dev(args.host, args.port, args.sandbox_port)


def cmd_submit(args: argparse.Namespace) -> int:
    from service.client import commands

    return commands.submit(args)


def cmd_jobs(args: argparse.Namespace) -> int:
    from service.client import commands

    return commands.jobs(args)


def cmd_retry(args: argparse.Namespace) -> int:
    from service.client import commands

    return commands.retry(args)


def cmd_audit(args: argparse.Namespace) -> int:
    if args.job:
        # One or a few jobs: ask the running service (no database or secret needed here).
        from service.client import commands

        return commands.audit_jobs(args)
    from service.archive.audit_cli import run_audit_cli
    from service.wiring import build_store

    settings = _settings(require_secrets=False, local=True)
    return run_audit_cli(args, settings, build_store(settings))


def cmd_reindex(args: argparse.Namespace) -> int:
    from service.archive.reindex_cli import run_reindex_cli
    from service.wiring import build_store

    settings = _settings(require_secrets=False, local=True)
    return run_reindex_cli(args, settings, build_store(settings))


def cmd_signing_key(args: argparse.Namespace) -> int:
    from service.security.signing import signer_from_settings

    settings = _settings(require_secrets=False, local=True)
    if settings.signing_key is None:
        settings.require("secret_key")  # the key is derived from it
    described = signer_from_settings(settings).verifier.describe()
    print(json.dumps(described) if args.json else described["public_key"])
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genvault", description=__doc__)
    p.add_argument("--version", action="version", version=f"genvault {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    _server_commands(sub)
    _client_commands(sub)
    _archive_commands(sub)
    events_cli.add_parsers(sub)
    access_cli.add_parsers(sub, lambda: _settings(local=True))
    archive_cli.add_parsers(sub, lambda: _settings(require_secrets=False, local=True))
    reindex_cli.add_parsers(sub, cmd_reindex)
    db_cli.add_parsers(sub, lambda: _settings(require_secrets=False, local=True))
    return p


# argparse's subparsers action has no public type; Any keeps these helpers honest enough.
def _server_commands(sub: Any) -> None:
    """The pieces of the service itself: they need its settings."""
    d = sub.add_parser("dev", help="web + worker + sandbox provider on one machine (SQLite, files)")
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=8000)
    d.add_argument("--sandbox-port", type=int, default=8001)
    d.set_defaults(func=cmd_dev)

    s = sub.add_parser("serve", help="the web tier under gunicorn")
    s.add_argument("--bind", help="address to listen on (default from GENVAULT_BIND or :8000)")
    s.set_defaults(func=cmd_serve)

    w = sub.add_parser("worker", help="run background tasks until SIGTERM")
    w.add_argument("--concurrency", type=int, help="tasks at once (GENVAULT_WORKER_CONCURRENCY)")
    w.set_defaults(func=cmd_worker)

    sub.add_parser("migrate", help="bring the database schema up to date").set_defaults(
        func=cmd_migrate
    )

    sb = sub.add_parser("sandbox", help="the provider simulator alone")
    sb.add_argument("--host", default="127.0.0.1")
    sb.add_argument("--port", type=int, default=8001)
    sb.add_argument(
        "--mode",
        action="append",
        default=[],
        metavar="MODE",
        help="behave like this unless a prompt says otherwise, e.g. processing, eta=5, "
        "webhook-never, fail, ratelimit=2, base64 (repeatable; same names as prompt markers)",
    )
    sb.add_argument("--webhook-delay", type=float, default=0.2, help="seconds before webhooks")
    sb.set_defaults(func=cmd_sandbox)


def _client_commands(sub: Any) -> None:
    """Commands that talk to a running genvault over its API."""
    client_note = " (over the API: GENVAULT_URL, GENVAULT_TOKEN)"
    su = sub.add_parser("submit", help="submit a job" + client_note)
    su.add_argument("endpoint")
    su.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    su.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    su.add_argument("--idempotency-key")
    su.add_argument(
        "--wait", action="store_true", help="wait until archived or failed; changes on stderr"
    )
    su.add_argument("--timeout", type=float, default=600.0, help="seconds --wait waits")
    su.add_argument("--json", action="store_true", help="print the job as JSON")
    su.set_defaults(func=cmd_submit)

    j = sub.add_parser(
        "jobs",
        help="list jobs, show one, or erase one (jobs delete ID --reason R)" + client_note,
    )
    # `jobs delete ID` rides on the optional id: a job id is hex, never the word "delete".
    j.add_argument("id", nargs="?", help="a job to show, or `delete`")
    j.add_argument("job_id", nargs="?", metavar="ID", help="with delete: the job to erase")
    j.add_argument("--reason", help="with delete: why (required; kept in the signed tombstone)")
    j.add_argument("--status")
    j.add_argument("--endpoint")
    j.add_argument("--limit", type=int, default=50)
    j.add_argument("--json", action="store_true", help="print JSON")
    j.set_defaults(func=cmd_jobs)

    r = sub.add_parser("retry", help="retry a failed job" + client_note)
    r.add_argument("id")
    r.add_argument("--json", action="store_true", help="print the job as JSON")
    r.set_defaults(func=cmd_retry)


def _archive_commands(sub: Any) -> None:
    a = sub.add_parser("audit", help="re-read archived objects and check them against manifests")
    a.add_argument("--since", help="only jobs created on or after this date (YYYY-MM-DD)")
    a.add_argument(
        "--job",
        action="append",
        help="audit this job through the running service's API (repeatable)",
    )
    a.add_argument("--quiet", action="store_true", help="print problems only")
    a.add_argument(
        "--bucket-only",
        action="store_true",
        help="no database: check every manifest's signature and listed objects in the archive",
    )
    a.add_argument(
        "--public-key",
        metavar="BASE64",
        help="verify signatures with this Ed25519 public key (default: the configured key)",
    )
    a.add_argument("--json", action="store_true", help="with --job: print the reports as JSON")
    a.set_defaults(func=cmd_audit)

    k = sub.add_parser("signing-key", help="print the public key that verifies manifests")
    k.add_argument("--json", action="store_true", help="with its algorithm and key id")
    k.set_defaults(func=cmd_signing_key)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"genvault: {exc.message}", file=sys.stderr)
        return 2
    except GenvaultError as exc:
        print(f"genvault: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
