"""The `genvault` command (also `python -m service`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from service import __version__
from service.errors import ConfigError, GenvaultError
from service.events import cli as events_cli


def _settings(require_secrets: bool = True, **overrides: Any) -> Any:
    from service.config import load_settings

    return load_settings(require_secrets=require_secrets, **overrides)


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


def _parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param needs key=value, got {pair!r}")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def cmd_submit(args: argparse.Namespace) -> int:
    from service.api.views import job_json
    from service.archive.pipeline import iter_asset_rows
    from service.jobs.records import get_job
    from service.jobs.submission import create_job
    from service.wiring import build

    container = build(_settings())
    job, _ = create_job(
        container.db,
        container.queue,
        endpoint=args.endpoint,
        params=_parse_params(args.param),
        metadata=_parse_params(args.meta),
        idempotency_key=args.idempotency_key,
    )
    deadline = time.monotonic() + args.timeout
    while args.wait and time.monotonic() < deadline:
        with container.db.transaction() as session:
            job = get_job(session, job.id)
        if job.status in ("archived", "failed"):
            break
        time.sleep(0.5)
    print(
        json.dumps(
            job_json(
                job,
                iter_asset_rows(container.db, job.id),
                container.store,
                container.settings.presign_expires_seconds,
            ),
            indent=2,
        )
    )
    return 1 if args.wait and job.status != "archived" else 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from service.api.views import job_json
    from service.archive.pipeline import iter_asset_rows
    from service.db.models import Job
    from service.jobs.records import get_job
    from service.wiring import build

    settings = _settings(require_secrets=False)
    settings.require("secret_key")  # signs the file links it prints
    container = build(settings)
    expires = container.settings.presign_expires_seconds
    with container.db.transaction() as session:
        if args.id:
            jobs = [get_job(session, args.id)]
        else:
            stmt = select(Job).order_by(Job.id.desc()).limit(args.limit)
            if args.status:
                stmt = stmt.where(Job.status == args.status)
            jobs = list(session.execute(stmt).scalars())
    if args.id:
        job = jobs[0]
        print(
            json.dumps(
                job_json(job, iter_asset_rows(container.db, job.id), container.store, expires),
                indent=2,
            )
        )
        return 0
    for job in jobs:
        error = f"  {job.error_code}: {job.error_message}" if job.error_code else ""
        print(
            f"{job.id}  {job.created_at:%Y-%m-%d %H:%M:%S}  {job.status:<10} {job.endpoint}{error}"
        )
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from service.archive.audit import run_audit_cli

    return run_audit_cli(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genvault", description=__doc__)
    p.add_argument("--version", action="version", version=f"genvault {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

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

    su = sub.add_parser("submit", help="submit a job from a shell")
    su.add_argument("endpoint")
    su.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    su.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    su.add_argument("--idempotency-key")
    su.add_argument("--wait", action="store_true", help="wait until archived or failed")
    su.add_argument("--timeout", type=float, default=600.0)
    su.set_defaults(func=cmd_submit)

    j = sub.add_parser("jobs", help="list jobs, or show one")
    j.add_argument("id", nargs="?")
    j.add_argument("--status")
    j.add_argument("--limit", type=int, default=50)
    j.set_defaults(func=cmd_jobs)

    a = sub.add_parser("audit", help="re-read archived objects and check them against manifests")
    a.add_argument("--since", help="only jobs created on or after this date (YYYY-MM-DD)")
    a.add_argument("--job", help="only this job id")
    a.add_argument("--quiet", action="store_true", help="print problems only")
    a.set_defaults(func=cmd_audit)

    events_cli.add_parsers(sub)
    return p


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
