"""A database with a bit of everything, old and new: for retention and `genvault db copy`."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from service.db.enums import JobStatus, TaskKind, TaskStatus
from service.db.models import (
    ApiKey,
    Asset,
    AuditEntry,
    Callback,
    DeliveryAttempt,
    Event,
    EventDelivery,
    EventEndpoint,
    Job,
    Project,
    Task,
)
from service.db.session import Database
from service.db.types import utcnow

OLD = timedelta(days=60)


@dataclass
class Populated:
    jobs: dict[JobStatus, str] = field(default_factory=dict)
    # Rows retention must keep, by table, and rows it may remove.
    kept_callbacks: set[int] = field(default_factory=set)
    pruned_callbacks: set[int] = field(default_factory=set)
    kept_tasks: set[int] = field(default_factory=set)
    pruned_tasks: set[int] = field(default_factory=set)
    kept_events: set[str] = field(default_factory=set)
    pruned_events: set[str] = field(default_factory=set)
    pending_delivery: int = 0


def _id() -> str:
    return uuid.uuid4().hex


def populate(db: Database, *, age: timedelta = OLD) -> Populated:
    """Jobs in every state (all created ``age`` ago), with what hangs off them."""
    old = utcnow() - age
    out = Populated()
    slug = f"p-{_id()[:8]}"
    with db.transaction() as s:
        s.add(Project(slug=slug, name="Acme", created_by="test", created_at=old))
        s.flush()
        s.add(
            ApiKey(
                id=_id()[:16],
                name="ci",
                project=slug,
                scopes=["jobs:read"],
                secret_hash="0" * 64,
                created_by="test",
                created_at=old,
                expires_at=utcnow() + timedelta(days=30),
            )
        )
        endpoints = []
        for n in range(2):
            endpoint = EventEndpoint(
                id=f"ep_{_id()[:20]}",
                url=f"https://example.com/hook/{n}",
                secret=f"whsec_{_id()}",
                event_types=None,
                enabled=True,
                created_at=old,
                updated_at=old,
            )
            s.add(endpoint)
            endpoints.append(endpoint)
        s.flush()
        for n, status in enumerate(JobStatus):
            job = Job(
                id=_id(),
                track_id=_id(),
                endpoint="modelslab/text2img",
                status=status,
                params={"prompt": f"a lighthouse number {n}"},
                meta={"order": f"o-{n}"},
                created_at=old,
                updated_at=old,
            )
            s.add(job)
            s.flush()
            out.jobs[status] = job.id
            first = Callback(
                job_id=job.id,
                source="webhook",
                status="processing",
                body={"status": "processing"},
                result={"status": "processing"},
                body_sha256=hashlib.sha256(f"{job.id}1".encode()).hexdigest(),
                received_at=old,
            )
            second = Callback(
                job_id=job.id,
                source="webhook",
                status="success",
                body={"status": "success"},
                result={"status": "success", "outputs": ["https://example.com/0.png"]},
                body_sha256=hashlib.sha256(f"{job.id}2".encode()).hexdigest(),
                received_at=old,
            )
            s.add_all([first, second])
            s.flush()
            if status is JobStatus.ARCHIVED:
                job.result_callback_id = second.id
                job.manifest_key = f"2026/01/01/{job.id}/manifest.json"
                s.add(
                    Asset(
                        job_id=job.id,
                        role="output",
                        index=0,
                        key=f"2026/01/01/{job.id}/0.png",
                        source_url="https://example.com/0.png",
                        sha256="a" * 64,
                        size=3,
                        content_type="image/png",
                        width=1,
                        height=1,
                        created_at=old,
                    )
                )
                out.pruned_callbacks.add(first.id)
                out.kept_callbacks.add(second.id)
            elif status is JobStatus.DELETED:
                # An erased job needs none (these came after its erasure, say).
                out.pruned_callbacks |= {first.id, second.id}
            else:
                out.kept_callbacks |= {first.id, second.id}
            # Every job had a submit that finished long ago; jobs not final have live work.
            done = Task(
                kind=TaskKind.SUBMIT,
                job_id=job.id,
                payload={},
                status=TaskStatus.DONE if n % 2 else TaskStatus.FAILED,
                attempts=1,
                max_attempts=10,
                run_after=old,
                dedupe_key=f"submit:{job.id}",
                created_at=old,
                updated_at=old,
            )
            s.add(done)
            s.flush()
            out.pruned_tasks.add(done.id)
            if not status.terminal:
                live = Task(
                    kind=TaskKind.POLL,
                    job_id=job.id,
                    payload={},
                    status=TaskStatus.QUEUED if n % 2 else TaskStatus.RUNNING,
                    attempts=0,
                    max_attempts=10,
                    run_after=old,
                    dedupe_key=f"poll:{job.id}",
                    created_at=old,
                    updated_at=old,
                )
                s.add(live)
                s.flush()
                out.kept_tasks.add(live.id)
        # Events: an old delivered one, an old one still pending somewhere, a new one.
        archived = out.jobs[JobStatus.ARCHIVED]
        for kind, created in (("delivered", old), ("pending", old), ("new", utcnow())):
            event = Event(
                id=f"evt_{_id()[:20]}",
                type="job.archived",
                job_id=archived,
                data={"id": archived},
                created_at=created,
            )
            s.add(event)
            s.flush()
            for n, endpoint in enumerate(endpoints):
                pending = kind == "pending" and n == 1
                delivery = EventDelivery(
                    event_id=event.id,
                    endpoint_id=endpoint.id,
                    status="pending" if pending else "succeeded",
                    attempts=1,
                    created_at=created,
                    updated_at=created,
                )
                s.add(delivery)
                s.flush()
                if pending:
                    out.pending_delivery = delivery.id
                s.add(
                    DeliveryAttempt(
                        delivery_id=delivery.id, at=created, response_status=200, duration_ms=5
                    )
                )
            (out.pruned_events if kind == "delivered" else out.kept_events).add(event.id)
        for action in ("project.create", "key.create", "endpoint.create"):
            s.add(
                AuditEntry(
                    at=old,
                    actor="test",
                    action=action,
                    project=slug,
                    target="t",
                    outcome="ok",
                    changes={"slug": slug},
                )
            )
    return out
