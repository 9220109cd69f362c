"""genvault with its durable write taken out: the ceiling rows of bench/ingest.py.

Not the product. The webhook view runs as shipped (authenticate, cap, parse, remove
secrets, metrics, answer), except that ``WebhookIngest.record`` writes nothing.
GENVAULT_BENCH_WRITE says what it does instead:

    none        answers at once: as if the write were free and instant
    wait:<ms>   sleeps that long first: as if the write were free but had to be waited
                for, which any design that answers only after its commit must do

The second is the ceiling of the promise "answered 200 means kept" in a thread-per-request
server: no database work at all, only the wait. Run by bench/ingest.py as

    PYTHONPATH=<checkout> gunicorn -c deploy/gunicorn.conf.py --chdir bench genvault_ceiling:app
"""

from __future__ import annotations

import os
import time
from typing import Any

from service.app import create_app
from service.jobs import ingest


def _without_the_write(mode: str) -> Any:
    if mode == "none":
        return lambda _self, _provider, _track_id, _values: ingest.Outcome.ACCEPTED
    if mode.startswith("wait:"):
        seconds = float(mode.removeprefix("wait:")) / 1000

        def record(_self: Any, _provider: str, _track_id: str, _values: Any) -> ingest.Outcome:
            time.sleep(seconds)
            return ingest.Outcome.ACCEPTED

        return record
    raise SystemExit(f"GENVAULT_BENCH_WRITE must be 'none' or 'wait:<ms>', not {mode!r}")


ingest.WebhookIngest.record = _without_the_write(  # type: ignore[method-assign]
    os.environ.get("GENVAULT_BENCH_WRITE", "none")
)
app = create_app()
