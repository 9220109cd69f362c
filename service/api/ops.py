"""Health, readiness, metrics, the OpenAPI document, and signed file links."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Literal

from flask import Blueprint, Response, abort, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from service import metrics
from service.api.context import container
from service.api.errors import DATABASE_RETRY_AFTER
from service.api.openapi import RETRY_AFTER, Param, Reply, document, documented
from service.api.schemas import Health, Readiness, respond
from service.events import gauges
from service.security.tokens import verify_file_signature
from service.storage.base import ObjectMissing
from service.tasks import gauges as task_gauges

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)
_OPENAPI = "genvault.openapi"


@bp.get("/healthz")
@documented("Alive", {200: Health}, public=True, database=False)
def healthz() -> tuple[Response, int]:
    return respond(Health(status="ok"))


@bp.get("/readyz")
@documented(
    "Database and archive reachable",
    {
        200: Readiness,
        503: Reply("not ready: the checks say which part", Readiness, headers=(RETRY_AFTER,)),
    },
    public=True,
)
def readyz() -> tuple[Response, int]:
    checks = _readiness(logging.WARNING)
    ready = all(v == "ok" for v in checks.values())
    response, status = respond(
        Readiness(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503
    )
    if not ready:
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER)
    return response, status


def _readiness(level: int) -> dict[str, Literal["ok", "unavailable"]]:
    """Run the readiness checks, and set genvault_ready for each (the alerting rules read it)."""
    c = container()
    checks: dict[str, Literal["ok", "unavailable"]] = {}
    for name, probe in (("database", c.db.ping), ("archive", c.store.check)):
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            log.log(level, "readiness check %s failed: %s", name, type(exc).__name__)
            checks[name] = "unavailable"
        metrics.READY.labels(name).set(1 if checks[name] == "ok" else 0)
    return checks


@bp.get("/metrics")
@documented(
    "Prometheus metrics (the event gauges are read from the database)",
    {200: Reply("the Prometheus text format", media_type="text/plain", schema={"type": "string"})},
    public=True,
)
def metrics_endpoint() -> Response:
    # Without the database the rest is still served (genvault_ready says why it is missing).
    if _readiness(logging.DEBUG)["database"] == "ok":
        db = container().db
        gauges.refresh(db)
        task_gauges.refresh(db)
    registry: CollectorRegistry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Under gunicorn each worker process counts alone; sum them from the shared dir.
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


@bp.get("/openapi.json")
@documented(
    "This document",
    {200: Reply("OpenAPI 3.1", schema={"type": "object"})},
    public=True,
    database=False,
)
def openapi() -> Response:
    # Routes are fixed once the app serves, so the document is built once per app.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if _OPENAPI not in app.extensions:
        app.extensions[_OPENAPI] = document(app)
    return jsonify(app.extensions[_OPENAPI])


@bp.get("/files/<path:key>")
@documented(
    "An object of the file store, through a link signed by the job JSON's asset url",
    {200: Reply("the object's bytes, with its own Content-Type", media_type="*/*", schema={})},
    errors=(403, 404),
    query=[
        Param("expires", "query", {"type": "integer"}, required=True),
        Param("sig", "query", required=True),
    ],
    public=True,
    database=False,  # the file store only
)
def files(key: str) -> Response:
    """Serve an object of the file store through a link signed by ArchiveStore.url()."""
    c = container()
    try:
        expires = int(request.args.get("expires", "0"))
    except ValueError:
        abort(403)
    if not verify_file_signature(
        c.settings.secret, key, expires, request.args.get("sig"), time.time()
    ):
        abort(403)
    try:
        info = c.store.head(key)
        stream = c.store.open(key)
    except ObjectMissing:
        abort(404)

    def chunks() -> Iterator[bytes]:
        with stream:
            yield from iter(lambda: stream.read(64 * 1024), b"")

    return Response(
        chunks(),
        mimetype=info.content_type or "application/octet-stream",
        headers={
            "Content-Length": str(info.size),
            # Archived objects never change, so a link may be cached for as long as it is valid.
            "Cache-Control": f"private, max-age={max(0, expires - int(time.time()))}, immutable",
        },
        direct_passthrough=True,
    )
