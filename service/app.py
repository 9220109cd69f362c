"""The Flask application factory."""

from __future__ import annotations

import logging

from flask import Flask

from service.api import access, endpoints, errors, events, jobs, ops, signing_key, webhooks
from service.api.context import EXTENSION
from service.api.webhook_entry import WebhookEntry
from service.config import DEV_API_TOKEN, Settings, load_settings
from service.logs import configure as configure_logging

# Importing the admin pages is what hangs them (/ui/keys, /ui/projects, /ui/audit-log) on ui_bp.
from service.ui import admin as _admin_pages  # noqa: F401
from service.ui import oidc
from service.ui import session as ui_session
from service.ui.views import bp as ui_bp
from service.wiring import Container, build

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, container: Container | None = None) -> Flask:
    """Build the app. With no arguments (gunicorn), settings come from the environment."""
    if container is None:
        settings = settings or load_settings()
        configure_logging(settings.log_level, settings.log_json)
        container = build(settings)
    app = Flask("genvault")
    # Flask refuses larger bodies with 413 before a view runs; webhooks cap lower themselves.
    app.config["MAX_CONTENT_LENGTH"] = container.settings.request_max_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION] = container
    errors.register(app)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(signing_key.bp)
    ui_session.configure(app, container.settings)
    app.register_blueprint(ui_bp)
    oidc.configure(app, container.settings)  # people sign in there, when an issuer is set
    app.register_blueprint(endpoints.bp)
    app.register_blueprint(events.bp)
    app.register_blueprint(access.bp)
    # Webhooks in order are answered below Flask; everything else reaches it unchanged.
    app.wsgi_app = WebhookEntry(app.wsgi_app, container)  # type: ignore[method-assign]
    if any(t.get_secret_value() != DEV_API_TOKEN for t in container.settings.api_tokens):
        log.warning(
            "GENVAULT_API_TOKENS is deprecated: each of its tokens is an admin of every project."
            " Create scoped API keys instead (genvault keys create, or POST /v1/keys) and"
            " remove GENVAULT_API_TOKENS."
        )
    return app
