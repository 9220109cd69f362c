"""The CLI's client commands: submit, jobs (and jobs delete), retry and audit --job, over the
HTTP API."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from service.client import render
from service.client.api import ApiClient
from service.errors import ConfigError


def parse_pairs(pairs: Sequence[str], option: str) -> dict[str, Any]:
    """``k=v`` pairs; a value that parses as JSON (numbers, true, lists) is taken as such."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{option} needs key=value, got {pair!r}")
        try:
            values[key] = json.loads(raw)
        except ValueError:
            values[key] = raw
    return values


def _client() -> ApiClient:
    return ApiClient.from_env()


def submit(args: argparse.Namespace) -> int:
    client = _client()
    job = client.submit(
        args.endpoint,
        parse_pairs(args.param, "--param"),
        parse_pairs(args.meta, "--meta"),
        idempotency_key=args.idempotency_key,
    )
    if args.wait:
        started = time.monotonic()

        def changed(view: dict[str, Any]) -> None:
            # Status changes go to stderr as they happen; stdout keeps only the result.
            extra = f"  {render.error_text(view)}" if view.get("error") else ""
            print(
                f"{view['id']}  {view['status']}  ({time.monotonic() - started:.1f}s){extra}",
                file=sys.stderr,
                flush=True,
            )

        job = client.wait(job["id"], timeout=args.timeout, on_change=changed)
    if args.json:
        render.emit_json(job, sys.stdout)
    else:
        print(render.job_detail(job))
    if args.wait and job["status"] != "archived":
        if job["status"] != "failed":
            print(f"genvault: still {job['status']} after {args.timeout:g}s", file=sys.stderr)
        return 1
    return 0


def jobs(args: argparse.Namespace) -> int:
    if args.id == "delete":
        return delete_job(args)
    if args.job_id or args.reason is not None:
        raise ConfigError("--reason and a second id belong to `genvault jobs delete ID --reason R`")
    client = _client()
    if args.id:
        job = client.job(args.id)
        if args.json:
            render.emit_json(job, sys.stdout)
        else:
            print(render.job_detail(job))
        return 0
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    # Follow the API's cursor until --limit jobs (the API pages at most 200 at a time).
    while len(found) < args.limit:
        page = client.jobs(
            status=args.status,
            endpoint=args.endpoint,
            limit=min(200, args.limit - len(found)),
            cursor=cursor,
        )
        found += page["jobs"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
        # A long listing says how far it has got (stderr, so --json output stays clean).
        print(f"fetched {len(found)}/{args.limit} jobs", file=sys.stderr, flush=True)
    if args.json:
        render.emit_json({"jobs": found, "next_cursor": cursor}, sys.stdout)
    elif found:
        print(render.jobs_table(found))
    else:
        print("no jobs", file=sys.stderr)
    return 0


def delete_job(args: argparse.Namespace) -> int:
    """`genvault jobs delete ID --reason R`: erase a job (DELETE /v1/jobs/{id})."""
    if not args.job_id:
        raise ConfigError("usage: genvault jobs delete ID --reason REASON")
    if not (args.reason or "").strip():
        raise ConfigError("genvault jobs delete needs --reason (kept in the signed tombstone)")
    job = _client().delete_job(args.job_id, args.reason)
    if args.json:
        render.emit_json(job, sys.stdout)
    else:
        print(f"{job['id']}  {job['status']}  (objects removed; tombstone written)")
    return 0


def retry(args: argparse.Namespace) -> int:
    client = _client()
    job = client.retry(args.id)
    if args.json:
        render.emit_json(job, sys.stdout)
    else:
        print(f"{job['id']}  retrying: now {job['status']}")
    return 0


def audit_jobs(args: argparse.Namespace) -> int:
    """`genvault audit --job ID [--job ID …]` through the API; progress on stderr."""
    client = _client()
    ids: list[str] = args.job
    reports: list[dict[str, Any]] = []
    problems = 0
    for done, job_id in enumerate(ids, start=1):
        report = client.audit(job_id)
        reports.append(report)
        problems += not report.get("ok")
        if len(ids) > 1:
            print(
                f"audited {done}/{len(ids)} jobs, {problems} with problems",
                file=sys.stderr,
                flush=True,
            )
        if not args.json and (not args.quiet or not report.get("ok")):
            print(render.audit_line(report))
    if args.json:
        render.emit_json(reports if len(reports) > 1 else reports[0], sys.stdout)
    return 1 if problems else 0
