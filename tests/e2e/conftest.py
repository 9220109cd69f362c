from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.archive_checks import ImageOrigin
from tests.support.faults import DEFAULTS
from tests.support.pgcluster import PgCluster
from tests.support.stack import Stack


@pytest.fixture
def origin() -> Iterator[ImageOrigin]:
    """A loopback HTTP server for input images and hand-delivered outputs."""
    with ImageOrigin() as server:
        yield server


@pytest.fixture
def pg_stack(
    pg_cluster: PgCluster, stack_factory: Callable[..., Stack]
) -> Iterator[Callable[..., Stack]]:
    """Stacks on databases of this module's own PostgreSQL cluster (pg_cluster), which the
    outage scenarios stop and restart; settings the defaults (faults.DEFAULTS)."""

    def make(**env: str) -> Stack:
        return stack_factory(pg_cluster.create_database(), **{**DEFAULTS, **env})

    yield make
    if not pg_cluster.running():
        pg_cluster.start()  # a failed test must not leave the next one without a server
