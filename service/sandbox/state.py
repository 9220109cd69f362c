"""The sandbox's memory: requests, the files they produce, rate-limit counters, webhooks."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from service.sandbox.modes import Modes, SandboxConfig
from service.sandbox.render import ImageSpec

log = logging.getLogger(__name__)

# Ids look like ModelsLab's (eight digits) so nothing downstream relies on small numbers.
_FIRST_ID = 81_000_001


@dataclass(frozen=True)
class StoredFile:
    """An output file: rendered on request, served only once its generation is ready."""

    image: ImageSpec
    as_base64: bool
    ready_at: float

    @property
    def media_type(self) -> str:
        return "text/plain" if self.as_base64 else self.image.media_type


@dataclass(frozen=True)
class Generation:
    """One accepted ModelsLab request and everything needed to answer a fetch for it."""

    id: int
    modes: Modes
    outputs: tuple[str, ...]
    meta: Mapping[str, Any]
    fetch_url: str
    ready_at: float
    generation_time: float
    track_id: Any = None

    def remaining(self) -> float:
        """Seconds until the result is ready (0 once it is)."""
        return max(0.0, self.ready_at - time.monotonic())


class Store:
    """Thread-safe in-memory store. Nothing is evicted: a sandbox lives for a run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(_FIRST_ID)
        self._generations: dict[int, Generation] = {}
        self._files: dict[str, StoredFile] = {}
        self._attempts: Counter[str] = Counter()
        self._submissions: Counter[str] = Counter()
        self._prompts: Counter[str] = Counter()

    def next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def add(self, generation: Generation, files: Mapping[str, StoredFile]) -> None:
        with self._lock:
            self._generations[generation.id] = generation
            self._files.update(files)

    def add_files(self, files: Mapping[str, StoredFile]) -> None:
        with self._lock:
            self._files.update(files)

    def generation(self, generation_id: int) -> Generation | None:
        with self._lock:
            return self._generations.get(generation_id)

    def file(self, name: str) -> StoredFile | None:
        with self._lock:
            return self._files.get(name)

    def count_submission(self, track_id: object) -> None:
        """Count a generation request that reached the provider, by its ``track_id``."""
        with self._lock:
            self._submissions[str(track_id)] += 1

    def submissions(self) -> dict[str, int]:
        """Requests received per ``track_id``: what a customer would have been billed for."""
        with self._lock:
            return dict(self._submissions)

    def fails(self, prompt: str, limit: int) -> bool:
        """Count one generation of ``prompt``; true while it is among the first ``limit``."""
        with self._lock:
            self._prompts[prompt] += 1
            return self._prompts[prompt] <= limit

    def rate_limited(self, prompt: str, limit: int) -> bool:
        """Count one attempt with ``prompt``; true while it is among the first ``limit``."""
        with self._lock:
            self._attempts[prompt] += 1
            return self._attempts[prompt] <= limit


class WebhookSender:
    """Best-effort delivery from background threads, like the real provider's.

    Errors are logged and dropped. ``close()`` cancels deliveries still waiting for their
    delay, so a stopped sandbox does not call anyone afterwards.
    """

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()

    def schedule(self, url: str, body: Mapping[str, Any], *, delay: float, times: int = 1) -> None:
        """POST ``body`` as JSON to ``url`` ``times`` times, starting ``delay`` seconds from now."""
        if self._closed.is_set():
            return
        thread = threading.Thread(
            target=self._deliver, args=(url, dict(body), delay, times), daemon=True
        )
        thread.name = f"sandbox-webhook-{body.get('id')}"
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """Cancel pending deliveries and wait briefly for those in flight."""
        self._closed.set()
        with self._lock:
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _deliver(self, url: str, body: dict[str, Any], delay: float, times: int) -> None:
        try:
            if self._closed.wait(delay):
                return
            for _ in range(times):
                self._post(url, body)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _post(self, url: str, body: dict[str, Any]) -> None:
        # The webhook URL carries the receiver's secret in its query: log only where it goes.
        parts = urlsplit(url)
        where = f"{parts.scheme}://{parts.netloc}{parts.path}"
        try:
            response = requests.post(url, json=body, timeout=self._timeout)
        except requests.RequestException as exc:
            log.warning("sandbox webhook to %s failed: %s", where, type(exc).__name__)
            return
        log.info("sandbox webhook to %s answered %s", where, response.status_code)


class SandboxState:
    """What one sandbox app owns: its configuration, store and webhook sender."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.store = Store()
        self.webhooks = WebhookSender(config.webhook_timeout)

    def close(self) -> None:
        self.webhooks.close()
