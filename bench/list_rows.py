"""What a row of GET /v1/jobs costs: the list of 20 and of 50 jobs, in process.

On PostgreSQL (a throwaway database; --sqlite for a file), with an S3 archive (its links are
presigned; no S3 server is needed to sign one), inserts --jobs archived jobs shaped as a real
one (an OCFL object, two output images with Content Credentials, a thumbnail, metadata), then
times GET /v1/jobs?limit=20 and ?limit=50 through Flask's test client, one request at a time,
and prints the median of --rounds and the cost per row ((t50 - t20) / 30).

    .venv/bin/python bench/list_rows.py [--rounds 30] [--sqlite] [--file-archive] [--profile]

--profile prints cProfile's top functions (by cumulative time) of --rounds lists of 50.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
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
from service.archive import layout  # noqa: E402
from service.db.migrate import upgrade  # noqa: E402
from service.db.models import Asset, Job  # noqa: E402
from service.wiring import build  # noqa: E402
from tests.support.app import AUTH, make_settings  # noqa: E402
from tests.support.db import create_pg_database, drop_pg_database  # noqa: E402

CREDENTIALS = {
    "present": True,
    "valid": True,
    "claim_generator": "genvault-sandbox/1.0",
    "digital_source_type": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
}


def fill(container, n: int) -> None:  # type: ignore[no-untyped-def]
    """``n`` archived jobs, a minute apart, each with two outputs and a thumbnail."""
    start = datetime.now(UTC) - timedelta(minutes=n)
    jobs, assets = [], []
    for i in range(n):
        created = start + timedelta(minutes=i)
        job_id = f"{int(created.timestamp() * 1000):012x}{secrets.token_hex(10)}"
        where = layout.JobLayout.object(job_id, "default")
        jobs.append(
            {
                "id": job_id,
                "track_id": secrets.token_hex(16),
                "endpoint": "modelslab/text2img",
                "status": "archived",
                "params": {"model_id": "m", "prompt": f"a fox in the snow {i}", "width": 512},
                "meta": {"order": f"o-{i}", "customer": "acme"},
                "provider_request_id": str(1_000_000 + i),
                "nsfw": False,
                "manifest_key": where.manifest_key(),
                "manifest_sha256": "0" * 64,
                "created_at": created,
                "updated_at": created + timedelta(seconds=3),
                "archived_at": created + timedelta(seconds=3),
            }
        )
        for index in range(2):
            assets.append(
                {
                    "job_id": job_id,
                    "role": "output",
                    "index": index,
                    "key": where.output_key(index, "png"),
                    "source_url": f"https://cdn.example/{job_id}/{index}.png",
                    "sha256": secrets.token_hex(32),
                    "size": 400_000 + i,
                    "content_type": "image/png",
                    "width": 512,
                    "height": 512,
                    "content_credentials": CREDENTIALS,
                    "created_at": created,
                }
            )
        assets.append(
            {
                "job_id": job_id,
                "role": "thumb",
                "index": 0,
                "key": where.thumb_key(0),
                "source_url": where.output_key(0, "png"),
                "sha256": secrets.token_hex(32),
                "size": 9000,
                "content_type": "image/webp",
                "width": 256,
                "height": 256,
                "created_at": created,
            }
        )
    with container.db.transaction() as session:
        session.execute(insert(Job), jobs)
        session.execute(insert(Asset), assets)


def median_ms(client, url: str, rounds: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        r = client.get(url, headers=AUTH)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.get_data(as_text=True)[:300]
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file, not PostgreSQL")
    parser.add_argument("--file-archive", action="store_true", help="file://, not S3")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    # boto3 signs from these; nothing is sent to the endpoint.
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL_S3="http://127.0.0.1:9",
    )
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db" if args.sqlite else create_pg_database()
        try:
            archive = f"file://{tmp}/archive" if args.file_archive else "s3://bench/archive"
            container = build(make_settings(url, Path(tmp), archive_url=archive))
            try:
                upgrade(container.db.engine)
                fill(container, args.jobs)
                client = create_app(container=container).test_client()
                for limit in (20, 50):  # warm: connections, caches, first-call imports
                    median_ms(client, f"/v1/jobs?limit={limit}", 5)
                t20 = median_ms(client, "/v1/jobs?limit=20", args.rounds)
                t50 = median_ms(client, "/v1/jobs?limit=50", args.rounds)
                where = "SQLite" if args.sqlite else "PostgreSQL"
                store = "file" if args.file_archive else "S3"
                print(f"{where}, {store} archive, median of {args.rounds}:")
                print(f"  GET /v1/jobs?limit=20  {t20:6.2f} ms")
                print(f"  GET /v1/jobs?limit=50  {t50:6.2f} ms")
                print(f"  per row                {(t50 - t20) / 30 * 1000:6.0f} us")
                if args.profile:
                    profile = cProfile.Profile()
                    profile.enable()
                    for _ in range(args.rounds):
                        client.get("/v1/jobs?limit=50", headers=AUTH)
                    profile.disable()
                    stats = pstats.Stats(profile).sort_stats(os.environ.get("PSORT", "cumulative"))
                    stats.print_stats(45)
                    if os.environ.get("PCALLERS"):
                        stats.print_callers(os.environ["PCALLERS"])
            finally:
                container.close()
        finally:
            if not args.sqlite:
                drop_pg_database(url)


if __name__ == "__main__":
    main()
