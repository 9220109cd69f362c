"""Webhook receiver latency over loopback, against gunicorn as deployed.

Starts `genvault migrate` and gunicorn (deploy/gunicorn.conf.py, 2 workers) on SQLite and,
when reachable, PostgreSQL; creates jobs through the API; then times, one request at a
time over a keep-alive connection:
  - GET /healthz                   the baseline: gunicorn + Flask with no work
  - POST /webhooks/… (new)         verify token, cap body, parse, store, enqueue, answer
  - POST /webhooks/… (duplicate)   the same callbacks again
and prints median and p99 for each, and the ratio to the baseline.

    .venv/bin/python bench/webhook_latency.py [--callbacks 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.security.tokens import webhook_token  # noqa: E402
from tests.support.db import create_pg_database, drop_pg_database  # noqa: E402
from tests.support.stack import SECRET, Stack, start_stack  # noqa: E402


def timed(n: int, call) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def summary(name: str, ms: list[float], baseline: float | None) -> str:
    med = statistics.median(ms)
    p99 = statistics.quantiles(ms, n=100)[98]
    ratio = f"  ({med / baseline:.1f}x baseline median)" if baseline else ""
    return f"  {name:<22} n={len(ms):<5} median {med:6.2f} ms   p99 {p99:6.2f} ms{ratio}"


def run(stack: Stack, n: int) -> None:
    http = requests.Session()
    jobs = []
    for i in range(n):
        r = http.post(
            f"{stack.web_url}/v1/jobs",
            headers=stack.auth,
            timeout=10,
            json={"endpoint": "modelslab/text2img", "params": {"model_id": "m", "prompt": f"p{i}"}},
        )
        r.raise_for_status()
        jobs.append(r.json())
    bodies = [
        json.dumps(
            {
                "status": "success",
                "id": 1000 + i,
                "generationTime": 1.2,
                "track_id": j["track_id"],
                "output": [f"https://cdn2.stablediffusionapi.com/generations/{i}-0.png"],
                "meta": {"seed": i, "width": 512, "height": 512},
            }
        ).encode()
        for i, j in enumerate(jobs)
    ]
    urls = [
        f"{stack.web_url}/webhooks/modelslab/{j['track_id']}?token="
        f"{webhook_token(SECRET.encode(), 'modelslab', j['track_id'])}"
        for j in jobs
    ]
    headers = {"Content-Type": "application/json"}

    def health(_: int) -> None:
        assert http.get(f"{stack.web_url}/healthz", timeout=10).status_code == 200

    def hook(i: int) -> None:
        r = http.post(urls[i], data=bodies[i], headers=headers, timeout=10)
        assert r.status_code == 200, r.text

    timed(50, health)  # warm up every gunicorn worker thread
    base = timed(n, health)
    new = timed(n, hook)
    dup = timed(n, hook)
    baseline = statistics.median(base)
    print(summary("GET /healthz", base, None))
    print(summary("webhook, new", new, baseline))
    print(summary("webhook, duplicate", dup, baseline))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--callbacks", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        overrides = {
            "GENVAULT_ARCHIVE_URL": f"file://{tmp_path / 'archive'}",
            "GENVAULT_LOG_LEVEL": "WARNING",
        }
        for name in ("sqlite", "postgresql"):
            if name == "sqlite":
                url, cleanup = f"sqlite:///{tmp_path / 'bench.db'}", None
            else:
                try:
                    url = create_pg_database()
                except BaseException as exc:  # pytest.skip is a BaseException
                    print(f"{name}: skipped ({exc})")
                    continue
                cleanup = url
            (tmp_path / name).mkdir()
            stack = start_stack(
                tmp_path / name, "http://127.0.0.1:9", "unused", url, workers=0, **overrides
            )
            try:
                print(f"{name} ({args.callbacks} callbacks, sequential, keep-alive, loopback):")
                run(stack, args.callbacks)
            finally:
                stack.stop()
                if cleanup:
                    drop_pg_database(cleanup)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
