"""Health, readiness, metrics, the OpenAPI document, and signed file links."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

from flask import Blueprint, Response, abort, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from service.api.context import container
from service.api.errors import DATABASE_RETRY_AFTER
from service.api.openapi import document
from service.security.tokens import verify_file_signature
from service.storage.base import ObjectMissing

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    c = container()
    checks: dict[str, str] = {}
    for name, probe in (("database", c.db.ping), ("archive", c.store.check)):
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            log.warning("readiness check %s failed: %s", name, type(exc).__name__)
            checks[name] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    response = jsonify({"status": "ok" if ready else "unavailable", "checks": checks})
    if not ready:
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER)
    return response, 200 if ready else 503


@bp.get("/metrics")
def metrics_endpoint() -> Response:
    registry: CollectorRegistry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Under gunicorn each worker process counts alone; sum them from the shared dir.
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(document())


@bp.get("/files/<path:key>")
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
        headers={"Content-Length": str(info.size), "Cache-Control": "private, max-age=60"},
        direct_passthrough=True,
    )
