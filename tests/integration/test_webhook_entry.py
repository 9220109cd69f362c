"""The webhook entry (api/webhook_entry.py) answers exactly as the Flask view does.

Each request is sent twice, on both databases: once as it is (a request in order is
answered below Flask), and once with an extra query parameter, which the entry leaves to
the Flask view. Status, body, content type and Retry-After must be the same, and so must
what was stored and counted. Outages are covered through real processes in
tests/e2e/test_outage.py (assert_unavailable_is_503).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from service.api.webhook_entry import WebhookEntry
from service.db.models import Callback
from service.security.tokens import webhook_token
from service.wiring import Container
from tests.support.app import SECRET, submit_job

SUCCESS = {
    "status": "success",
    "id": 81443063,
    "output": ["https://cdn2.stablediffusionapi.com/generations/a-0.png"],
}


def _answer(r: Any) -> tuple[int, Any, str, str | None]:
    return r.status_code, r.get_json(silent=True), r.content_type, r.headers.get("Retry-After")


def _counted(provider: str, outcome: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "genvault_webhooks_total", {"provider": provider, "outcome": outcome}
        )
        or 0.0
    )


def _cases(client: FlaskClient) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, path with query, keyword arguments of client.post): one of each answer."""
    job = submit_job(client)
    track = job["track_id"]
    token = webhook_token(SECRET.encode(), "modelslab", track)
    good = f"/webhooks/modelslab/{track}?token={token}"
    body = json.dumps({**SUCCESS, "track_id": track})
    unknown = "0" * 32
    return [
        ("accepted", good, {"data": body}),
        ("duplicate", good, {"data": body}),
        ("a second body", good, {"data": json.dumps({**SUCCESS, "n": 2})}),
        ("bad token", f"/webhooks/modelslab/{track}?token={'A' * 43}", {"data": body}),
        ("no token", f"/webhooks/modelslab/{track}?token=", {"data": body}),
        ("padded token", f"{good}=", {"data": json.dumps({**SUCCESS, "n": 3})}),
        (
            "unknown track_id",
            f"/webhooks/modelslab/{unknown}"
            f"?token={webhook_token(SECRET.encode(), 'modelslab', unknown)}",
            {"data": body},
        ),
        ("other provider", f"/webhooks/aimlapi/{track}?token={token}", {"data": body}),
        ("unknown provider", f"/webhooks/nope/{track}?token={token}", {"data": body}),
        ("not JSON", good, {"data": b"{not json"}),
        ("not an object", good, {"data": b"[1, 2]"}),
        ("NaN", good, {"data": b'{"status": NaN}'}),
        ("too large", good, {"data": b" " * (1024 * 1024) + b"{}"}),
        ("control character", f"/webhooks/modelslab/{track}%01?token={token}", {"data": body}),
    ]


def test_every_answer_is_the_views(client: FlaskClient, container: Container) -> None:
    assert isinstance(client.application.wsgi_app, WebhookEntry)
    for name, path, kwargs in _cases(client):
        before = {o: _counted("modelslab", o) for o in ("accepted", "duplicate")}
        entry = client.post(path, content_type="application/json", **kwargs)
        entry_counted = {o: _counted("modelslab", o) - before[o] for o in before}
        # The same request through Flask: one more query parameter, which the view ignores
        # and the entry does not take. Stored state moved on (a first "accepted" is now a
        # duplicate), so each is compared with what the view says to the same state.
        sep = "&" if "?" in path else "?"
        view = client.post(f"{path}{sep}via=flask", content_type="application/json", **kwargs)
        entry_answer, view_answer = _answer(entry), _answer(view)
        if name in ("accepted", "a second body", "padded token"):
            assert entry_answer == (200, {"status": "accepted"}, "application/json", None)
            assert view_answer == (200, {"status": "duplicate"}, "application/json", None)
            # Counted once, by whichever answered (a padded token is the view's).
            assert entry_counted == {"accepted": 1, "duplicate": 0}, name
            continue
        assert entry_answer == view_answer, name
        assert entry.status_code != 500, name
    with container.db.transaction() as s:
        # accepted, a second body, and the padded token's body (the view took that one).
        assert s.execute(select(func.count()).select_from(Callback)).scalar_one() == 3


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_other_methods_and_paths_reach_flask(client: FlaskClient, method: str) -> None:
    r = client.open("/webhooks/modelslab/abc?token=x", method=method)
    assert r.status_code == 405
    assert client.post("/webhooks/modelslab?token=x", data=b"{}").status_code == 404
