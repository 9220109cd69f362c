"""Provider keys go to the configured base URL only: forged fetch_result URLs, every variant.

Issue 7 item 1: ``http://127.0.0.1:OTHER\\@127.0.0.1:PROVIDER/api/v6/images/fetch/1`` passed
a urlsplit same-origin check while urllib3 connected to OTHER, which then received the key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import update

from service.db.migrate import upgrade
from service.db.models import Job, Task
from service.db.types import utcnow
from service.jobs.records import get_job
from service.jobs.submission import create_job
from service.providers.base import ProviderRejected
from service.providers.fetch_urls import inside_base_url
from service.providers.modelslab import ModelsLabClient
from service.wiring import Container, build
from tests.integration.test_provider_clients import (
    ENTERPRISE,
    ENTERPRISE_KEY,
    KEY,
    TEXT2IMG,
    ReplayServer,
    Reply,
    _serve,
)
from tests.support.app import make_settings

PROVIDER = "http://127.0.0.1:8001"
BASE = PROVIDER + "/api"
OTHER = "http://127.0.0.1:9002"


def forged_variants(provider: str, other: str) -> list[str]:
    """fetch_result values that name (or could be read as naming) another origin or path."""
    p_host, p_port = provider.removeprefix("http://").split(":")
    o_port = other.rsplit(":", 1)[1]
    path = "/api/v6/images/fetch/1"
    return [
        f"http://127.0.0.1:{o_port}\\@127.0.0.1:{p_port}{path}",  # the exact finding
        f"http://127.0.0.1:{o_port}\\\\@127.0.0.1:{p_port}{path}",
        f"http://127.0.0.1:{o_port}/\\@127.0.0.1:{p_port}{path}",
        f"http://127.0.0.1:{p_port}@127.0.0.1:{o_port}{path}",  # userinfo that looks like ours
        f"http://user:pw@127.0.0.1:{p_port}{path}",  # userinfo on our own origin
        f"http://@127.0.0.1:{p_port}{path}",
        f"http://127.0.0.1:{p_port}{path}#@127.0.0.1:{o_port}",  # fragment
        f"http://127.0.0.1:{p_port}{path}#",
        f"http://127.0.0.1:{p_port}{path} @127.0.0.1:{o_port}",  # whitespace
        f"http://127.0.0.1:{p_port}{path}\t",
        f" http://127.0.0.1:{p_port}{path}",
        f"http://127.0.0.1:{p_port}\n{path}",
        f"http://127.0.0.1:{p_port}{path}\x00",
        f"http://127.0.0.1:{o_port}{path}",  # another port
        f"https://127.0.0.1:{p_port}{path}",  # another scheme
        f"//127.0.0.1:{o_port}{path}",  # scheme-relative
        f"http://localhost:{p_port}{path}",  # another name for the same machine
        f"http://127.0.0.2:{p_port}{path}",
        f"http://[::ffff:127.0.0.1]:{p_port}{path}",
        f"http://127.0.0.1.:{p_port}{path}",
        f"http://{p_host}:{p_port}/other{path}",  # our origin, outside the base path
        f"http://{p_host}:{p_port}/api/../admin/fetch/1",  # dot segments out of the base
        f"http://{p_host}:{p_port}/api/%2e%2e/admin/fetch/1",  # encoded dot segments
        f"http://{p_host}:{p_port}/api%2f..%2fadmin",
        f"http://{p_host}:{p_port}/api/v6/images/fetch/1%40127.0.0.1:{o_port}",
        f"http://{p_host}:{p_port}/apiv6/images/fetch/1",  # a prefix that is not a segment
        f"javascript:alert(1)//{p_host}:{p_port}{path}",
        f"ftp://{p_host}:{p_port}{path}",
        f"http://127.0.0.1:{p_port}:{o_port}{path}",
        "",
    ]


@pytest.mark.parametrize("url", forged_variants(PROVIDER, OTHER))
def test_a_forged_fetch_result_is_not_inside_the_base_url(url: str) -> None:
    assert not inside_base_url(url, BASE)


@pytest.mark.parametrize(
    "url",
    [
        f"{BASE}/v6/images/fetch/1",
        f"{BASE}/v1/enterprise/flux_kontext_dev/fetch/abc?x=1",
        "HTTP://127.0.0.1:8001/api/v6/images/fetch/1",
    ],
)
def test_an_honest_fetch_result_is_inside_the_base_url(url: str) -> None:
    assert inside_base_url(url, BASE)
    assert inside_base_url(
        "https://modelslab.com:443/api/v6/images/fetch/1", "https://modelslab.com/api"
    )


@pytest.fixture
def provider() -> Iterator[ReplayServer]:
    yield from _serve()


@pytest.fixture
def other() -> Iterator[ReplayServer]:
    """Another loopback server: receiving anything at all is a leak of the key."""
    yield from _serve()


def test_no_variant_reaches_the_other_server_through_the_client(
    provider: ReplayServer, other: ReplayServer
) -> None:
    with requests.Session() as http:
        client = ModelsLabClient(provider.url + "/api", KEY, ENTERPRISE_KEY, http, timeout=2.0)
        for url in forged_variants(provider.url, other.url):
            # With an id, the poll goes to the documented path whatever fetch_result says.
            provider.on("/api/v6/images/fetch/77", Reply(200, {"status": "processing", "id": 77}))
            client.fetch(TEXT2IMG, "77", url)
            # Without one (enterprise "id": null) a forged URL is refused, not called.
            with pytest.raises(ProviderRejected):
                client.fetch(ENTERPRISE, None, url)
    assert other.seen == []
    assert {s.path for s in provider.seen} == {"/api/v6/images/fetch/77"}
    assert all(s.body == {"key": KEY} for s in provider.seen)


@pytest.fixture
def wired(provider: ReplayServer, database_url: str, tmp_path: Path) -> Iterator[Container]:
    c = build(make_settings(database_url, tmp_path, modelslab_base_url=provider.url + "/api"))
    upgrade(c.db.engine)
    try:
        yield c
    finally:
        c.close()


def _poll_now(c: Container) -> None:
    with c.db.transaction() as s:
        s.execute(update(Task).values(run_after=utcnow()))


@pytest.mark.parametrize("endpoint", [TEXT2IMG, ENTERPRISE])
def test_a_forged_callback_never_sends_the_key_to_another_server(
    wired: Container, provider: ReplayServer, other: ReplayServer, endpoint: str
) -> None:
    enterprise = endpoint == ENTERPRISE
    submit_path = (
        "/api/v1/enterprise/flux_kontext_dev/img2img" if enterprise else "/api/v6/images/text2img"
    )
    fetch_path = (
        "/api/v1/enterprise/flux_kontext_dev/fetch/q-9" if enterprise else "/api/v6/images/fetch/9"
    )
    processing = {
        "status": "processing",
        "id": None if enterprise else 9,
        "eta": 600,
        "fetch_result": provider.url + fetch_path,
    }
    provider.on(submit_path, Reply(200, processing))
    params = (
        {"prompt": "p", "init_image": "https://example.com/a.png"}
        if enterprise
        else {"model_id": "m", "prompt": "p"}
    )
    job, _ = create_job(wired.db, wired.queue, endpoint=endpoint, params=params, metadata={})
    worker = wired.worker()
    worker.run_once()  # submit: the provider answers "processing"
    with wired.db.transaction() as s:
        track_id = get_job(s, job.id).track_id

    for forged in forged_variants(provider.url, other.url):
        body = {**processing, "track_id": track_id, "fetch_result": forged}
        wired.receiver.receive("modelslab", track_id, json.dumps(body).encode())
        provider.on(fetch_path, Reply(200, processing))
        _poll_now(wired)
        worker.run_once()

    assert other.seen == [], "the other server was called"
    polls = [s for s in provider.seen if s.path != submit_path]
    assert polls and {s.path for s in polls} == {fetch_path}
    settings = wired.settings
    secret = settings.modelslab_enterprise_api_key if enterprise else settings.modelslab_api_key
    assert secret is not None
    assert all(s.body == {"key": secret.get_secret_value()} for s in polls)
    with wired.db.transaction() as s:
        row = s.get(Job, job.id)
        assert row is not None and row.fetch_url == provider.url + fetch_path
        assert row.status == "processing"
