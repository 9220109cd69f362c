"""What checking an API key adds to a request, against the same request without it.

genvault runs under gunicorn with the shipped deploy/gunicorn.conf.py (4 processes x 4
threads). `wrk -t2` asks for GET /v1/signing-key, a route whose only work is the credential
check, in three ways, one after the other in the same run:

  - GET /healthz                    no credential check at all: the floor
  - /v1/signing-key, legacy token   GENVAULT_API_TOKENS: a constant-time compare in memory
  - /v1/signing-key, API key        gvk_ key: checksum, one primary-key SELECT, HMAC-SHA256,
                                    expiry and revocation (last_used_at is written once a
                                    minute at most, so not on these requests)

For each it prints requests/s, p50 and p99 at -c1 (the latency one request pays) and at
-c16 (throughput under load), the ratio to the legacy token, and the difference in p50:
that difference is the cost of the key check. Then, in process, it times the check alone
(service.access.credentials.authenticate) for both credentials.

    .venv/bin/python bench/auth_cost.py [--duration 5] [--databases postgresql,sqlite]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_support import databases  # noqa: E402

from tests.support.stack import BIN, SECRET, TOKEN, start_stack  # noqa: E402

SHAPE = {"WEB_CONCURRENCY": "4", "GENVAULT_WEB_THREADS": "4"}
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class Result:
    rate: float
    p50_ms: float
    p99_ms: float
    non2xx: int


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if m is None:
        raise ValueError(f"wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, duration: int, connections: int, token: str | None) -> Result:
    header = ["-H", f"Authorization: Bearer {token}"] if token else []
    threads = "-t2" if connections > 1 else "-t1"
    out = subprocess.run(
        ["wrk", threads, f"-c{connections}", f"-d{duration}s", "--latency", *header, url],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Result(rate, p50, p99, int(bad.group(1)) if bad else 0)


def bootstrap_key(database_url: str) -> str:
    env = {"GENVAULT_DATABASE_URL": database_url, "GENVAULT_SECRET_KEY": SECRET, "PATH": str(BIN)}
    out = subprocess.run(
        [str(BIN / "genvault"), "keys", "create", "--bootstrap", "--name", "bench", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return str(re.search(r'"key": "(gvk_[^"]+)"', out).group(1))  # type: ignore[union-attr]


def in_process(database_url: str, key: str, rounds: int = 2000) -> tuple[float, float]:
    """Microseconds per check: (legacy token, API key), the check alone."""
    from service.access import credentials
    from service.db.session import Database, make_engine

    db = Database(make_engine(database_url))
    secret = SECRET.encode()
    out = []
    for credential in (TOKEN, key):
        assert credentials.authenticate(db, secret, (TOKEN,), credential) is not None
        start = time.perf_counter()
        for _ in range(rounds):
            credentials.authenticate(db, secret, (TOKEN,), credential)
        out.append((time.perf_counter() - start) / rounds * 1e6)
    db.dispose()
    return out[0], out[1]


def bench_database(name: str, url: str, tmp: Path, duration: int) -> None:
    (tmp / name).mkdir()
    stack = start_stack(
        tmp / name,
        "http://127.0.0.1:9",
        "unused",
        url,
        workers=0,
        GENVAULT_ARCHIVE_URL=f"file://{tmp / name / 'archive'}",
        GENVAULT_LOG_LEVEL="WARNING",
        **SHAPE,
    )
    try:
        key = bootstrap_key(url)
        route = f"{stack.web_url}/v1/signing-key"
        print(f"{name}: wrk --latency -d{duration}s, 4 processes x 4 threads")
        for connections in (1, 16):
            wrk(route, 2, connections, key)  # every process and pool warmed up
            wrk(route, 2, connections, TOKEN)
            floor = wrk(f"{stack.web_url}/healthz", duration, connections, None)
            legacy = wrk(route, duration, connections, TOKEN)
            keyed = wrk(route, duration, connections, key)
            for label, r in (
                ("/healthz, no credential", floor),
                ("/v1/signing-key, legacy token", legacy),
                ("/v1/signing-key, API key", keyed),
            ):
                print(
                    f"  -c{connections:<3} {label:<31} {r.rate:8.0f} req/s"
                    f"  {r.rate / legacy.rate:5.2f}x token"
                    f"  p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms  non-2xx {r.non2xx}"
                )
            print(
                f"  -c{connections:<3} the key check adds {keyed.p50_ms - legacy.p50_ms:+.2f} ms"
                f" at p50 and {keyed.p99_ms - legacy.p99_ms:+.2f} ms at p99"
            )
        token_us, key_us = in_process(url, key)
        print(f"  in process: legacy token {token_us:.1f} us, API key {key_us:.1f} us per check")
    finally:
        stack.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--databases", default="postgresql,sqlite")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("auth_cost: SKIPPED: wrk is missing (Debian: apt-get install wrk)")
        return 0
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name, url in databases(args.databases, tmp):
            bench_database(name, url, tmp, args.duration)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
