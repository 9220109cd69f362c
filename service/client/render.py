"""How the CLI prints jobs: readable tables by default, JSON with --json."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [header, *rows]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def when(stamp: str | None) -> str:
    if not stamp:
        return ""
    moment = datetime.fromisoformat(stamp)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def error_text(job: dict[str, Any]) -> str:
    error = job.get("error")
    return f"{error['code']}: {error['message']}" if error else ""


def jobs_table(jobs: Sequence[dict[str, Any]]) -> str:
    rows = [
        [
            j["id"],
            when(j.get("created_at")),
            j["status"],
            j["endpoint"],
            str(len(j.get("assets") or [])),
            error_text(j),
        ]
        for j in jobs
    ]
    return table(rows, ["ID", "CREATED (UTC)", "STATUS", "ENDPOINT", "IMAGES", "ERROR"])


def job_detail(job: dict[str, Any]) -> str:
    fields = [
        ("id", job["id"]),
        ("status", job["status"]),
        ("endpoint", job["endpoint"]),
        ("created", when(job.get("created_at"))),
        ("updated", when(job.get("updated_at"))),
        ("provider id", job.get("provider_request_id") or ""),
        ("manifest", job.get("manifest_key") or ""),
        ("error", error_text(job)),
        ("metadata", json.dumps(job.get("metadata") or {}, ensure_ascii=False)),
    ]
    width = max(len(name) for name, _ in fields)
    out = [f"{name.ljust(width)}  {value}" for name, value in fields if value]
    assets = job.get("assets") or []
    if assets:
        rows = [
            [
                str(a["index"]),
                f"{a.get('width')}x{a.get('height')}",
                str(a.get("size")),
                a.get("sha256") or "",
                a.get("url") or "",
            ]
            for a in assets
        ]
        out += ["", table(rows, ["#", "SIZE", "BYTES", "SHA256", "URL"])]
    return "\n".join(out)


def audit_line(report: dict[str, Any]) -> str:
    verdict = "ok" if report.get("ok") else "PROBLEMS"
    parts = [
        f"{report['job_id']}  {verdict}  {report.get('checked', 0)} objects checked",
        f"missing {len(report.get('missing') or [])}",
        f"altered {len(report.get('altered') or [])}",
        f"unlisted {len(report.get('unlisted') or [])}",
    ]
    if report.get("error"):
        parts.append(f"error: {report['error']}")
    return ", ".join(parts)


def emit_json(value: Any, out: TextIO) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False), file=out)
