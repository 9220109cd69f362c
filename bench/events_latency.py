"""Event delivery latency: from a job becoming `archived` to a receiver's 2xx.

Starts moto's S3, the sandbox, gunicorn and one `genvault worker` on SQLite (or the
PostgreSQL of --postgres), registers a loopback receiver that verifies every delivery with
the official `standardwebhooks` package, submits jobs at a steady rate, and for each
`job.archived` event measures receipt time (the receiver answers 2xx right after verifying)
minus the job's `updated_at` (the instant of the transition, written in the same transaction
as the event). Baseline in the same run: a plain POST from this process to the same
receiver (loopback HTTP alone). The default rate, 5 jobs/s, is one the single worker keeps
up with on a 2-core machine; past it, deliveries also wait for the archive backlog.

Broker types (bench/broker_latency.py): beside the HTTP endpoint, one endpoint of each
broker type that answers on this machine (RabbitMQ, NATS JetStream, Redis), each with a
consumer in this process that verifies with `standardwebhooks`; archived -> confirmed is
the consumer's receipt minus `updated_at` (a consumer sees a message once the broker has
routed or stored it, the instant it confirms). So every event goes to four endpoints of the
one worker: --http-only measures the HTTP row alone, as before. After the stack stops, the
same run measures each broker's own publish round trip on a kept connection (pika publish +
confirm, nats-py js.publish, XADD) and the genvault adapter's publish() on its kept
connection; --brokers-only prints just those (no stack).

    .venv/bin/python bench/events_latency.py [--jobs 220] [--rate 5] [--postgres] [--http-only]
    .venv/bin/python bench/events_latency.py --brokers-only [--broker-publishes 1000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_support import create_bucket, moto_server  # noqa: E402
from broker_latency import Consumer, round_trips, start_consumers  # noqa: E402
from standardwebhooks.webhooks import Webhook  # noqa: E402

from tests.support.receivers import start_receiver  # noqa: E402
from tests.support.stack import start_stack  # noqa: E402


def summary(name: str, ms: list[float], baseline: float | None = None) -> str:
    med = statistics.median(ms)
    p99 = statistics.quantiles(ms, n=100)[98]
    ratio = f"  ({med / baseline:.1f}x baseline median)" if baseline else ""
    return f"  {name:<38} n={len(ms):<4} median {med:7.2f} ms   p99 {p99:7.2f} ms{ratio}"


def main() -> int:  # noqa: PLR0915 - one linear script: start, measure, stop, report
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=220)
    parser.add_argument("--rate", type=float, default=5.0, help="jobs submitted per second")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--http-only", action="store_true", help="no broker endpoints")
    parser.add_argument("--brokers-only", action="store_true", help="only the round trips")
    parser.add_argument("--broker-publishes", type=int, default=1000, help="per round-trip row")
    args = parser.parse_args()
    if args.brokers_only:
        return report_brokers([], args.broker_publishes, args.jobs)
    rx = start_receiver()
    consumers: list[Consumer] = []
    with tempfile.TemporaryDirectory() as tmp, moto_server() as s3:
        tmp_path = Path(tmp)
        create_bucket(s3.url)
        pg_url = None
        if args.postgres:
            from tests.support.db import create_pg_database

            pg_url = create_pg_database()
        stack = start_stack(
            tmp_path,
            s3.url,
            "bench",
            pg_url or f"sqlite:///{tmp_path / 'bench.db'}",
            workers=1,
            GENVAULT_EVENTS_ALLOWED_NETWORKS="127.0.0.1/32",
            GENVAULT_LOG_LEVEL="WARNING",
        )
        try:
            http = requests.Session()
            r = http.post(
                f"{stack.web_url}/v1/endpoints",
                json={"url": rx.url, "event_types": ["job.archived"]},
                headers=stack.auth,
                timeout=10,
            )
            r.raise_for_status()
            rx.secret = r.json()["secret"]
            if not args.http_only:
                consumers = start_consumers()
                add_endpoints(http, stack.web_url, stack.auth, consumers)
            # Baseline: loopback HTTP to the same receiver, unsigned (so not counted below).
            base_ms = []
            for _ in range(200):
                t0 = time.perf_counter()
                requests.post(rx.url, data=b"{}", timeout=5)
                base_ms.append((time.perf_counter() - t0) * 1000)
            with rx.lock:
                rx.received.clear()

            started = time.monotonic()
            for i in range(args.jobs):
                due = started + i / args.rate
                time.sleep(max(0.0, due - time.monotonic()))
                stack.submit(
                    "modelslab/text2img",
                    {"model_id": "flux", "prompt": f"bench {i}", "width": 256, "height": 256},
                )
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and (
                len(rx.received) < args.jobs or any(len(c.got) < args.jobs for c in consumers)
            ):
                time.sleep(0.1)
            with rx.lock:
                got = list(rx.received)
        finally:
            stack.stop()
            for c in consumers:
                c.stop()
            if pg_url:
                from tests.support.db import drop_pg_database

                drop_pg_database(pg_url)
    bad = [g for g in got if g.verified is None]
    latencies = []
    for g in got:
        if g.verified is None:
            continue
        moved = datetime.fromisoformat(g.verified["data"]["updated_at"]).timestamp()
        latencies.append((g.wall - moved) * 1000)
    db = "PostgreSQL" if args.postgres else "SQLite"
    print(f"{args.jobs} jobs at {args.rate:g}/s, one worker, {db}; {len(bad)} failed to verify")
    base = statistics.median(base_ms)
    print(summary("baseline: loopback POST", base_ms))
    print(summary("archived -> receiver 2xx", latencies, base))
    if args.http_only:
        return 0 if len(latencies) >= args.jobs and not bad else 1
    failed = report_brokers(consumers, args.broker_publishes, args.jobs)
    return 0 if len(latencies) >= args.jobs and not bad and not failed else 1


def add_endpoints(
    http: requests.Session, web_url: str, auth: dict[str, str], consumers: list[Consumer]
) -> None:
    """An endpoint for each consumer's broker, for job.archived; its secret kept to verify."""
    for c in consumers:
        r = http.post(
            f"{web_url}/v1/endpoints",
            json={"type": c.type, "config": c.config, "event_types": ["job.archived"]},
            headers=auth,
            timeout=10,
        )
        r.raise_for_status()
        c.secret = r.json()["secret"]


def report_brokers(consumers: list[Consumer], publishes: int, jobs: int) -> int:
    """Per broker type: its own round trip, the adapter's, then archived -> confirmed."""
    by_type = {c.type: c for c in consumers}
    failed = 0
    print(f"broker types: round trips over {publishes} publishes on a kept connection")
    for name, (raw, adapter) in round_trips(publishes).items():
        raw_median = statistics.median(raw)
        print(summary(f"{name} raw publish -> confirm", raw))
        print(summary(f"{name} adapter publish -> confirm", adapter, raw_median))
        consumer = by_type.get(name)
        if consumer is None:
            continue
        ms, unverified = archived_to_confirmed(consumer)
        if len(ms) < jobs or unverified:
            failed += 1
            print(f"  {name}: {len(consumer.got)} of {jobs} consumed, {unverified} unverified")
        if len(ms) > 1:
            print(summary(f"archived -> {name} confirmed", ms))
    return failed


def archived_to_confirmed(consumer: Consumer) -> tuple[list[float], int]:
    """Consumer receipt minus the job's transition, for each message that verifies."""
    assert consumer.secret is not None
    webhook = Webhook(consumer.secret)
    ms, unverified = [], 0
    for got in consumer.got:
        try:
            event = webhook.verify(got.body, got.headers)
        except Exception:
            unverified += 1
            continue
        moved = datetime.fromisoformat(event["data"]["updated_at"]).timestamp()
        ms.append((got.wall - moved) * 1000)
    return ms, unverified


if __name__ == "__main__":
    raise SystemExit(main())
