"""gunicorn settings for the web tier (deploy/gunicorn.conf.py uses these)."""

from __future__ import annotations

import gc
import multiprocessing
import os
import tempfile
from typing import Any

from service.http_log import ACCESS_LOG_FORMAT, AccessLogger

bind = os.environ.get("GENVAULT_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", min(4, multiprocessing.cpu_count() * 2 + 1)))
threads = int(os.environ.get("GENVAULT_WEB_THREADS", "4"))
worker_class = "gthread"
# Providers must get their answer within 30 s; nothing in a request should come close.
timeout = 30
graceful_timeout = 25
keepalive = 5
# A process is replaced after this many requests, as a guard against slow leaks. At webhook
# rates (thousands a second) 10,000 recycled each process every few seconds, and a fresh
# process spends its first second importing instead of answering (p99 spikes in bench/).
max_requests = 200_000
max_requests_jitter = 20_000
accesslog = "-"
# Without the query string (webhook URLs carry their token there); see service/http_log.py.
access_log_format = ACCESS_LOG_FORMAT
logger_class = AccessLogger
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# prometheus_client needs one shared directory to add up the workers' metrics.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="genvault-metrics-")


def child_exit(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def post_worker_init(_worker: Any) -> None:
    """The app is loaded: what exists now lives as long as the process, so the cyclic
    garbage collector stops scanning it.

    A full collection walked the ~200,000 objects of the loaded app (SQLAlchemy, pydantic,
    botocore...) and held the GIL for about 100 ms, a pause that landed on whichever
    requests were in flight. Frozen, a full collection took 0.3 ms (in process, a list of
    50 jobs in a loop). What is garbage at this point is collected first, not frozen.
    """
    gc.collect()
    gc.freeze()
