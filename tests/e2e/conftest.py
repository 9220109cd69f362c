from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.archive_checks import ImageOrigin


@pytest.fixture
def origin() -> Iterator[ImageOrigin]:
    """A loopback HTTP server for input images and hand-delivered outputs."""
    with ImageOrigin() as server:
        yield server
