"""The access log line's CPU: gunicorn's own Logger against service/http_log.py's.

Calls ``access()`` as gunicorn's worker does after each request, in this process, with the
shipped format (deploy/gunicorn.conf.py), a webhook's environ and headers and the line
written to /dev/null, for both logger classes in turns, and prints the CPU per line.

    .venv/bin/python bench/http_log.py [--lines 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gunicorn.config import Config  # noqa: E402
from gunicorn.glogging import Logger  # noqa: E402

from service.http_log import ACCESS_LOG_FORMAT, AccessLogger  # noqa: E402

# What gunicorn hands the logger for a webhook from wrk (bench/ingest.py).
HEADERS = [("Host", "127.0.0.1:8000"), ("Content-Type", "application/json")]
HEADERS += [("Content-Length", "225")]
ENVIRON = {
    "REMOTE_ADDR": "127.0.0.1",
    "REQUEST_METHOD": "POST",
    "RAW_URI": "/webhooks/modelslab/0123456789abcdef?token=abc",
    "PATH_INFO": "/webhooks/modelslab/0123456789abcdef",
    "QUERY_STRING": "token=abc",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "8000",
    "CONTENT_TYPE": "application/json",
    "CONTENT_LENGTH": "225",
    "HTTP_HOST": "127.0.0.1:8000",
    "wsgi.url_scheme": "http",
}


def per_line(cls: type[Logger], lines: int) -> float:
    cfg = Config()
    cfg.set("accesslog", "/dev/null")
    cfg.set("access_log_format", ACCESS_LOG_FORMAT)
    logger = cls(cfg)
    req = types.SimpleNamespace(headers=HEADERS)
    resp = types.SimpleNamespace(
        status="200 OK", sent=24, headers=[("Content-Type", "application/json")]
    )
    took = datetime.timedelta(microseconds=3456)
    started = time.process_time()
    for _ in range(lines):
        logger.access(resp, req, ENVIRON, took)
    return (time.process_time() - started) / lines * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"gunicorn": [], "genvault": []}
    for _ in range(args.rounds):
        figures["gunicorn"].append(per_line(Logger, args.lines))
        figures["genvault"].append(per_line(AccessLogger, args.lines))
    base = statistics.median(figures["gunicorn"])
    print(f"access log line, CPU of this process, median of {args.rounds} rounds")
    for name, label in (("gunicorn", "gunicorn's Logger"), ("genvault", "AccessLogger")):
        us = statistics.median(figures[name])
        print(f"  {label:<20} {us:6.1f} us  {us / base:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
