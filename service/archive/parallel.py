"""Side by side, in order: the archive's images (and their thumbnails) at a bounded width."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# A job's images download, verify and upload side by side: one at a time, a job spent its
# time waiting on one socket, slower than a naive get-then-put (bench/archive_throughput.py).
IMAGES_AT_ONCE = 4


def in_parallel(fn: Callable[..., T], calls: Sequence[tuple[Any, ...]]) -> list[T]:
    """``[fn(*args) for args in calls]``, up to IMAGES_AT_ONCE at a time, results in order.

    As with the loop, the first failure is raised (once all have ended).
    """
    if len(calls) <= 1:
        return [fn(*args) for args in calls]
    with ThreadPoolExecutor(min(IMAGES_AT_ONCE, len(calls)), "archive-image") as pool:
        futures = [pool.submit(fn, *args) for args in calls]
    return [f.result() for f in futures]
