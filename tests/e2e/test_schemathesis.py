"""schemathesis against gunicorn over /openapi.json, on SQLite and on PostgreSQL: zero failures.

Bounded for the suite (FUZZ_SECONDS each); `make fuzz` runs the same test for longer with
GENVAULT_FUZZ_SECONDS=90 and prints the figures.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import fuzz
from tests.support.db import create_pg_database, drop_pg_database
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

FUZZ_SECONDS = int(os.environ.get("GENVAULT_FUZZ_SECONDS", "15"))
# In the suite each operation is capped too, so a run is short on a busy machine.
MAX_EXAMPLES = None if "GENVAULT_FUZZ_SECONDS" in os.environ else 25


@pytest.mark.timeout(FUZZ_SECONDS + 120)
@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_schemathesis_finds_no_failure(
    stack_factory: Callable[..., Stack], tmp_path: Path, database: str
) -> None:
    pg_url = create_pg_database() if database == "postgres" else None
    stack = None
    try:
        # No worker: the web tier is under test, and jobs stay queued.
        stack = stack_factory(pg_url, workers=0)
        result = fuzz.run(stack, tmp_path, max_time=FUZZ_SECONDS, max_examples=MAX_EXAMPLES)
        print(f"\nschemathesis on {database}: {result.summary()}")
        # Every operation but GET /openapi.json, which schemathesis reads and does not test.
        assert result.operations >= 11, result.output
        assert result.webhook_cases > 0, result.output
        assert result.failures == 0, result.output
    finally:
        if pg_url is not None:
            if stack is not None:
                stack.stop()
            drop_pg_database(pg_url)
