"""The sandbox's Flask app: both providers' routes, the output files, a health check."""

from __future__ import annotations

import time

from flask import Flask, Response, abort, jsonify
from flask.json.provider import DefaultJSONProvider
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from service.sandbox.aimlapi import aimlapi_blueprint
from service.sandbox.modelslab import modelslab_blueprint
from service.sandbox.modes import SandboxConfig
from service.sandbox.render import render, render_base64_text
from service.sandbox.state import SandboxState

EXTENSION = "genvault.sandbox"


def make_sandbox_app(config: SandboxConfig | None = None) -> Flask:
    """A fresh sandbox with its own memory; routes under ``/api``, ``/aimlapi`` and ``/files``.

    The provider routes answer at the root too (``/v6/images/text2img``,
    ``/v1/images/generations``), whichever base URL a user configures.
    """
    state = SandboxState(config or SandboxConfig())
    app = Flask(__name__)
    json = DefaultJSONProvider(app)
    json.sort_keys = False  # answer in the field order the providers document
    app.json = json
    app.extensions[EXTENSION] = state
    modelslab, aimlapi = modelslab_blueprint(state), aimlapi_blueprint(state)
    app.register_blueprint(modelslab, url_prefix="/api")
    app.register_blueprint(aimlapi, url_prefix="/aimlapi")
    # Also at the root, so a base URL of just http://host:port works for either provider.
    app.register_blueprint(modelslab, url_prefix="", name="modelslab_root")
    app.register_blueprint(aimlapi, url_prefix="", name="aimlapi_root")

    @app.get("/files/<name>")
    def files(name: str) -> ResponseReturnValue:
        stored = state.store.file(name)
        # Like the providers' future_links: nothing there until the generation is ready.
        if stored is None or stored.ready_at > time.monotonic():
            abort(404)
        if stored.as_base64:
            return Response(render_base64_text(stored.image), mimetype=stored.media_type)
        return Response(render(stored.image), mimetype=stored.media_type)

    @app.get("/sandbox/submissions")
    def submissions() -> ResponseReturnValue:
        # Tests assert "exactly one paid generation per job" against this.
        return {"submissions": state.store.submissions()}

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return {"status": "ok"}

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        # Routes abort with ready-made provider bodies; everything else answers JSON too.
        if exc.response is not None:
            return exc.response
        return jsonify({"status": "error", "message": exc.description}), exc.code or 500

    return app


def sandbox_state(app: Flask) -> SandboxState:
    """The memory of an app made by ``make_sandbox_app``."""
    state = app.extensions[EXTENSION]
    assert isinstance(state, SandboxState)
    return state
