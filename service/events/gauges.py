"""Pending-delivery gauges, read from the database when /metrics is scraped."""

from __future__ import annotations

from sqlalchemy import func, select

from service import metrics
from service.db.models import EventDelivery
from service.db.session import Database
from service.db.types import utcnow
from service.events.types import DeliveryStatus


def refresh(db: Database) -> None:
    with db.transaction() as session:
        count, oldest = session.execute(
            select(func.count(), func.min(EventDelivery.created_at)).where(
                EventDelivery.status == DeliveryStatus.PENDING.value
            )
        ).one()
    metrics.EVENT_PENDING.set(count)
    if oldest is None:
        metrics.EVENT_OLDEST_PENDING_SECONDS.set(0)
        return
    metrics.EVENT_OLDEST_PENDING_SECONDS.set(max(0.0, (utcnow() - oldest).total_seconds()))
