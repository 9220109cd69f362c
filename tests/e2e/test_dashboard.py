"""The dashboard as a person uses it: headless Chromium against gunicorn + worker + sandbox."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.receivers import Receiver
from tests.support.stack import TOKEN, Stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# GENVAULT_UPDATE_SCREENSHOTS=1 refreshes the README's pictures; otherwise they go to tmp.
SHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture
def other_site() -> Iterator[Callable[[str], str]]:
    """A page on another site (localhost, not 127.0.0.1) whose form posts to the dashboard."""
    pages: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def page_posting_to(action: str) -> str:
        pages["/attack"] = (
            f'<form id="f" method="post" action="{action}"></form>'
            "<script>document.getElementById('f').submit()</script>"
        ).encode()
        return f"http://localhost:{server.server_address[1]}/attack"

    try:
        yield page_posting_to
    finally:
        server.shutdown()
        server.server_close()


def _images_loaded(page: Any, selector: str) -> list[int]:
    page.wait_for_function(
        "sel => [...document.querySelectorAll(sel)].every(i => i.complete)", arg=selector
    )
    widths: list[int] = page.eval_on_selector_all(selector, "imgs => imgs.map(i => i.naturalWidth)")
    return widths


def _wait_delivered(stack: Stack, job_id: str, timeout: float = 30) -> None:
    """Until the job's job.archived event has reached every endpoint."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = requests.get(
            f"{stack.web_url}/v1/events",
            params={"job_id": job_id, "type": "job.archived"},
            headers=stack.auth,
            timeout=10,
        ).json()["events"]
        if events:
            deliveries = requests.get(
                f"{stack.web_url}/v1/events/{events[0]['id']}/deliveries",
                headers=stack.auth,
                timeout=10,
            ).json()["deliveries"]
            if deliveries and all(d["status"] == "succeeded" for d in deliveries):
                return
        time.sleep(0.2)
    raise AssertionError(f"job.archived of {job_id} was not delivered\n{stack.tail_logs()}")


def test_sign_in_browse_filter_open_retry_and_refuse_cross_site(
    stack_factory: Callable[..., Stack],
    browser: Any,
    other_site: Callable[[str], str],
    receivers: list[Receiver],
    tmp_path: Path,
) -> None:
    stack = stack_factory(GENVAULT_EVENTS_ALLOWED_NETWORKS="127.0.0.1/32")
    # An integration listening for events: the job page and the operations page show them.
    r = requests.post(
        f"{stack.web_url}/v1/endpoints",
        json={"url": receivers[0].url, "description": "the CRM"},
        headers=stack.auth,
        timeout=10,
    )
    assert r.status_code == 201, r.text
    params = {"model_id": "flux", "width": 512, "height": 384, "samples": 2}
    good = [
        stack.submit("modelslab/text2img", {**params, "prompt": prompt}, metadata={"order": o})
        for prompt, o in (("a lighthouse at dusk", "o-1"), ("a red fox in snow", "o-2"))
    ]
    bad = stack.submit("modelslab/text2img", {**params, "prompt": "[sandbox:error] a broken one"})
    for job in good:
        assert stack.wait_status(job["id"], "archived", "failed")["status"] == "archived"
    failed = stack.wait_status(bad["id"], "failed")
    assert failed["error"]
    shots = SHOTS if os.environ.get("GENVAULT_UPDATE_SCREENSHOTS") else tmp_path
    shots.mkdir(parents=True, exist_ok=True)

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{stack.web_url}/ui/")
    assert "/ui/login" in page.url
    page.fill("input[name=token]", "not-a-token")
    page.click("button[type=submit]")
    assert "not valid" in page.inner_text("main")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-job-id]")
    assert TOKEN not in page.content()
    cookie = next(c for c in context.cookies() if c["name"] == "genvault_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["expires"] > 0

    # Every job is a card; the archived ones show thumbnails that really load.
    cards = page.eval_on_selector_all(
        "[data-job-id]", "cs => cs.map(c => [c.dataset.jobId, c.dataset.status])"
    )
    assert cards == [
        [bad["id"], "failed"],
        [good[1]["id"], "archived"],
        [good[0]["id"], "archived"],
    ]
    widths = _images_loaded(page, "[data-status=archived] .thumbs img")
    assert len(widths) == 4 and all(w > 0 for w in widths), widths
    # Signed links served by genvault whatever the store, and cacheable by the browser.
    src = page.eval_on_selector("[data-status=archived] .thumbs img", "i => i.src")
    got = requests.get(src, timeout=10)
    assert got.headers["Content-Type"] == "image/webp", got.status_code
    assert got.headers["Cache-Control"].endswith("immutable")
    assert requests.get(src.split("&sig=")[0] + "&sig=forged", timeout=10).status_code == 403
    page.screenshot(path=str(shots / "gallery.png"), full_page=True)

    # Readable on a phone: nothing wider than the screen.
    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, storage_state=context.storage_state()
    )
    small = phone.new_page()
    small.goto(f"{stack.web_url}/ui/")
    assert small.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    phone.close()

    # Filter: a prompt word, then a status.
    page.fill("input[name=q]", "FOX")
    page.click(".filters button")
    ids = page.eval_on_selector_all("[data-job-id]", "cs => cs.map(c => c.dataset.jobId)")
    assert ids == [good[1]["id"]]
    page.goto(f"{stack.web_url}/ui/")
    page.select_option("select[name=status]", "failed")
    page.click(".filters button")
    assert "status=failed" in page.url
    ids = page.eval_on_selector_all("[data-job-id]", "cs => cs.map(c => c.dataset.jobId)")
    assert ids == [bad["id"]]

    # A page on another site posting to the dashboard changes nothing.
    attack = context.new_page()
    attack.goto(other_site(f"{stack.web_url}/ui/jobs/{bad['id']}/retry"))
    attack.wait_for_url(f"{stack.web_url}/**")
    assert "Refused" in attack.inner_text("main")
    assert stack.job(bad["id"])["status"] == "failed"

    # Open the failed job and retry it.
    page.click(f"[data-job-id='{bad['id']}']")
    page.wait_for_url(f"**/ui/jobs/{bad['id']}")
    assert "provider" in page.inner_text(".flash.error")
    # Refused at submit, so it never reached the provider: a retry resubmits it.
    page.click("text=Resubmit to the provider (a new generation)")
    assert "Retrying: the job is queued again." in page.inner_text("main")
    # The job really went back into the pipeline (queued, then on to the provider again).
    moved = stack.wait(bad["id"], lambda j: j["updated_at"] > failed["updated_at"])
    assert moved["status"] != "failed" or moved["error"]

    # Open an archived job: full-size images load, and an audit finds everything in place.
    page.goto(f"{stack.web_url}/ui/jobs/{good[0]['id']}")
    widths = _images_loaded(page, ".images img")
    assert widths == [512, 512], widths
    text = page.inner_text("main")
    assert "a lighthouse at dusk" in text and "o-1" in text and "archived" in text
    assert good[0]["id"] in page.inner_text("pre") or "manifest.json" in text
    page.click("main button:text-is('Audit')")  # not the nav's "Audit log"
    assert "all objects match the manifest" in page.inner_text("#audit")
    assert "4 objects checked" in page.inner_text("#audit")  # 2 images, 2 thumbnails
    # The manifest's signature checks out, and the timeline has the job's events.
    assert page.inner_text("#signature") == "valid"
    _wait_delivered(stack, good[0]["id"])
    page.goto(f"{stack.web_url}/ui/jobs/{good[0]['id']}")
    timeline = page.inner_text(".timeline")
    assert f"job.archived delivered to {receivers[0].url}, 1 attempt" in timeline
    page.screenshot(path=str(shots / "job.png"), full_page=True)

    # Operations: the endpoint with its delivery health.
    page.goto(f"{stack.web_url}/ui/ops")
    health = page.inner_text("#endpoint-health")
    assert receivers[0].url in health and "enabled" in health and "the CRM" in health
    page.screenshot(path=str(shots / "ops.png"), full_page=True)
    context.close()
