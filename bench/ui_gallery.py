"""Dashboard page times on a large archive: is page 1,000 as cheap as page 1?

Fills a SQLite database (and PostgreSQL when reachable) with --jobs jobs (default 100,000;
a tenth archived with a thumbnail row each, a hundredth failed), then renders, in-process
through Flask's test client, one request at a time:
  - GET /healthz                  the baseline: Flask with no work
  - GET /v1/jobs?limit=48         the API's page of as many jobs, for comparison
  - /ui/                          the newest page
  - /ui/?cursor=<middle>          a page half-way down the list (keyset, not OFFSET)
  - /ui/?status=failed            a filtered page (index on status, id)
  - /ui/?q=<rare word>            search over prompt and metadata (scans until a page fills)
  - /ui/ops                       the operations page
and prints the median and p90 of each, and the ratio to the baseline.

    .venv/bin/python bench/ui_gallery.py [--jobs 100000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import re
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from service.app import create_app  # noqa: E402
from service.db.migrate import upgrade  # noqa: E402
from service.db.models import Asset, Job  # noqa: E402
from service.wiring import build  # noqa: E402
from tests.support.app import TOKEN, make_settings  # noqa: E402
from tests.support.db import create_pg_database, drop_pg_database  # noqa: E402


def fill(container, n: int) -> str:  # type: ignore[no-untyped-def]
    """Insert n jobs spread over the last 30 days; returns the id of the middle one."""
    start = datetime.now(UTC) - timedelta(days=30)
    step_ms = 30 * 86_400_000 // n
    ids = []
    jobs, assets = [], []
    for i in range(n):
        created = start + timedelta(milliseconds=i * step_ms)
        job_id = f"{int(created.timestamp() * 1000):012x}{secrets.token_hex(10)}"
        ids.append(job_id)
        status = "archived" if i % 10 == 0 else "failed" if i % 100 == 1 else "processing"
        word = "zebra" if i % 5000 == 7 else "fox"
        jobs.append(
            {
                "id": job_id,
                "track_id": secrets.token_hex(16),
                "endpoint": "modelslab/text2img",
                "status": status,
                "params": {"model_id": "flux", "prompt": f"a {word} number {i}"},
                "meta": {"order": f"o-{i}"},
                "error_code": "provider_failed" if status == "failed" else None,
                "error_message": "no" if status == "failed" else None,
                "created_at": created,
                "updated_at": created,
            }
        )
        if status == "archived":
            assets.append(
                {
                    "job_id": job_id,
                    "role": "thumb",
                    "index": 0,
                    "key": f"{created:%Y/%m/%d}/{job_id}/thumbs/0.webp",
                    "source_url": f"{created:%Y/%m/%d}/{job_id}/0.png",
                    "sha256": "0" * 64,
                    "size": 2000,
                    "content_type": "image/webp",
                    "width": 256,
                    "height": 256,
                    "created_at": created,
                }
            )
    with container.db.transaction() as session:
        for chunk in range(0, n, 5000):
            session.execute(insert(Job), jobs[chunk : chunk + 5000])
        for chunk in range(0, len(assets), 5000):
            session.execute(insert(Asset), assets[chunk : chunk + 5000])
    ids.sort()
    return ids[n // 2]


def timed(client, path: str, rounds: int) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        r = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (path, r.status_code)
    return times


def run(database_url: str, workdir: Path, n: int, rounds: int) -> None:
    c = build(make_settings(database_url, workdir))
    upgrade(c.db.engine)
    t = time.perf_counter()
    middle = fill(c, n)
    print(f"  inserted {n:,} jobs in {time.perf_counter() - t:.1f} s")
    client = create_app(container=c).test_client()
    page = client.get("/ui/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf
    client.post("/ui/login", data={"token": TOKEN, "csrf_token": csrf.group(1)})
    cases = {
        "GET /healthz (baseline)": "/healthz",
        "GET /v1/jobs?limit=48": "/v1/jobs?limit=48",
        "/ui/ newest page": "/ui/",
        "/ui/?cursor=<middle>": f"/ui/?cursor={middle}",
        "/ui/?status=failed": "/ui/?status=failed",
        "/ui/?q=zebra (rare)": "/ui/?q=zebra",
        "/ui/ops": "/ui/ops",
    }
    base = None
    for label, path in cases.items():
        timed(client, path, 3)  # warm caches
        times = timed(client, path, rounds)
        median = statistics.median(times)
        p90 = statistics.quantiles(times, n=10)[-1]
        base = base or median
        print(f"  {label:<26} median {median:7.2f} ms  p90 {p90:7.2f} ms  x{median / base:5.1f}")
    c.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"SQLite, {args.jobs:,} jobs")
        run(f"sqlite:///{tmp}/bench.db", Path(tmp), args.jobs, args.rounds)
    try:
        url = create_pg_database()
    except BaseException as exc:  # pytest's skip/fail outcomes when no server answers
        print(f"PostgreSQL skipped: {exc}")
        return 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"PostgreSQL, {args.jobs:,} jobs")
            run(url, Path(tmp), args.jobs, args.rounds)
    finally:
        drop_pg_database(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
