"""The body an endpoint receives: its ``format`` and ``links``, the same on every transport.

``standard`` is ``{"type", "timestamp", "data"}``; ``cloudevents`` is CloudEvents 1.0
structured JSON (``application/cloudevents+json``). ``fresh`` links are presigned when the
attempt goes out; ``stable`` ones are the archive keys and locations and the job's API URL,
for messages that may sit in a queue longer than a presigned link lives.
"""

from __future__ import annotations

import enum
import json
from typing import Any

from service.db.models import Event
from service.events import outbox
from service.jobs.shape import object_uri
from service.storage.base import ArchiveStore

CLOUDEVENTS_TYPE_PREFIX = "com.genvault."
JSON = "application/json"
CLOUDEVENTS_JSON = "application/cloudevents+json"


class BodyFormat(enum.StrEnum):
    STANDARD = "standard"
    CLOUDEVENTS = "cloudevents"


class Links(enum.StrEnum):
    FRESH = "fresh"
    STABLE = "stable"


def stable_links(data: dict[str, Any], store: ArchiveStore, public_url: str) -> dict[str, Any]:
    """Keys and locations (``uri``) of the assets, no presigned URL, and the job's API URL."""
    out = dict(data)
    out["object_uri"] = object_uri(data.get("manifest_key"), store)
    out["assets"] = [
        {**a, "uri": store.uri(a["key"]) if a.get("key") else None, "url": None}
        for a in data.get("assets") or ()
    ]
    if data.get("id"):
        out["api_url"] = f"{public_url.rstrip('/')}/v1/jobs/{data['id']}"
    return out


def event_body(
    event: Event,
    store: ArchiveStore,
    expires_in: int,
    *,
    format: str = BodyFormat.STANDARD,
    links: str = Links.FRESH,
    public_url: str = "",
) -> tuple[bytes, str]:
    """The bytes sent and signed, and their content type."""
    data: dict[str, Any] = event.data
    if event.type.startswith("job."):
        if links == Links.STABLE:
            data = stable_links(data, store, public_url)
        else:
            data = outbox.with_links(data, store, expires_in)
    if format == BodyFormat.CLOUDEVENTS:
        body: dict[str, Any] = {
            "specversion": "1.0",
            "id": event.id,
            "source": public_url.rstrip("/") or "urn:genvault",
            "type": CLOUDEVENTS_TYPE_PREFIX + event.type,
            "time": event.created_at.isoformat(),
            "datacontenttype": JSON,
            "data": data,
        }
        if event.job_id:
            body["subject"] = event.job_id
        return _dump(body), CLOUDEVENTS_JSON
    body = {"type": event.type, "timestamp": event.created_at.isoformat(), "data": data}
    return _dump(body), JSON


def _dump(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
