"""The sandbox provider over real HTTP on loopback, calling back a real webhook receiver."""

from __future__ import annotations

import base64
import io
import queue
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import requests
from PIL import Image
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from service.sandbox import ModeError, SandboxConfig, SandboxServer, start_in_thread

ETA = 0.5  # long enough for a loaded machine to look before the result is ready
WEBHOOK_DELAY = 0.05
KONTEXT_PRO = "flux/kontext-pro/image-to-image"
INIT_IMAGE = "https://example.com/in.png"


class Receiver:
    """A webhook endpoint on loopback that keeps every JSON body per path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, queue.Queue[tuple[float, Any]]] = {}
        self.url = ""

    def _queue(self, path: str) -> queue.Queue[tuple[float, Any]]:
        with self._lock:
            return self._queues.setdefault(path, queue.Queue())

    def __call__(self, environ: Any, start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        self._queue(request.path).put((time.monotonic(), request.get_json()))
        return Response("ok")(environ, start_response)

    def new_hook(self) -> str:
        """A fresh path of its own, so tests never see each other's callbacks."""
        return f"{self.url}/hooks/{uuid.uuid4().hex}?token=secret"

    def next(self, hook: str, timeout: float = 5.0) -> tuple[float, Any]:
        """(arrival time, body) of the next callback to ``hook``."""
        path = hook.removeprefix(self.url).split("?")[0]
        try:
            return self._queue(path).get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no webhook reached {path} within {timeout} s")

    def assert_none(self, hook: str, wait: float) -> None:
        path = hook.removeprefix(self.url).split("?")[0]
        with pytest.raises(queue.Empty):
            self._queue(path).get(timeout=wait)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    app = Receiver()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    app.url = f"http://127.0.0.1:{server.port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    config = SandboxConfig(webhook_delay=WEBHOOK_DELAY, eta=ETA, late_webhook_delay=1.0)
    server, thread = start_in_thread("127.0.0.1", 0, config)
    yield server
    server.shutdown()
    thread.join(5)


def text2img(sandbox: SandboxServer, prompt: str, **fields: Any) -> requests.Response:
    body = {"key": "test-key", "model_id": "flux", "prompt": prompt, **fields}
    return requests.post(f"{sandbox.modelslab_base_url}/v6/images/text2img", json=body, timeout=10)


def fetch(url: str, **fields: Any) -> requests.Response:
    return requests.post(url, json={"key": "test-key", **fields}, timeout=10)


def aimlapi(sandbox: SandboxServer, key: str = "test-key", **fields: Any) -> requests.Response:
    body = {"model": KONTEXT_PRO, "image_url": INIT_IMAGE, **fields}
    return requests.post(
        f"{sandbox.aimlapi_base_url}/v1/images/generations",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def image_at(url: str) -> Image.Image:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    return Image.open(io.BytesIO(response.content))


def test_text2img_answers_the_documented_success_shape(sandbox: SandboxServer) -> None:
    response = text2img(sandbox, "a lighthouse", width="320", height=256, samples="2", seed=7)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "status",
        "generationTime",
        "id",
        "output",
        "proxy_links",
        "nsfw_content_detected",
        "meta",
    }
    assert body["status"] == "success"
    assert isinstance(body["id"], int)
    assert isinstance(body["generationTime"], float)
    assert len(body["output"]) == 2
    assert all(url.startswith(f"{sandbox.url}/files/") for url in body["output"])
    assert body["proxy_links"] == body["output"]
    assert body["nsfw_content_detected"] is False
    meta = body["meta"]
    assert (meta["prompt"], meta["seed"], meta["width"], meta["height"]) == (
        "a lighthouse",
        7,
        320,
        256,
    )
    assert meta["base64"] == "no"


def test_outputs_are_pngs_of_the_requested_size_and_deterministic(sandbox: SandboxServer) -> None:
    first = text2img(sandbox, "a fox", width=320, height=200, seed=42, samples=2).json()["output"]
    again = text2img(sandbox, "a fox", width=320, height=200, seed=42).json()["output"]
    other = text2img(sandbox, "a fox", width=320, height=200, seed=43).json()["output"]

    image = image_at(first[0])
    assert (image.format, image.size) == ("PNG", (320, 200))
    assert first[0] != again[0]  # a new request gets new URLs...
    content = [requests.get(url, timeout=10).content for url in (*first, again[0], other[0])]
    assert content[0] == content[2]  # ...but the same prompt and seed give the same image
    assert content[0] != content[1]  # each sample differs
    assert content[0] != content[3]  # and so does another seed


def test_a_random_seed_is_recorded_and_reproduces_the_image(sandbox: SandboxServer) -> None:
    body = text2img(sandbox, "a heron", width=64, height=64, seed=None).json()
    seed = body["meta"]["seed"]
    assert isinstance(seed, int)

    again = text2img(sandbox, "a heron", width=64, height=64, seed=str(seed)).json()

    first = requests.get(body["output"][0], timeout=10).content
    assert requests.get(again["output"][0], timeout=10).content == first


@pytest.mark.parametrize("track_id", ["track-1", 12345])
def test_the_webhook_carries_the_result_and_track_id(
    sandbox: SandboxServer, receiver: Receiver, track_id: str | int
) -> None:
    hook = receiver.new_hook()
    body = text2img(sandbox, "a bridge", width=64, height=64, webhook=hook, track_id=track_id)

    _, callback = receiver.next(hook)

    submitted = body.json()
    assert callback == {
        "status": "success",
        "id": submitted["id"],
        "output": submitted["output"],
        "generationTime": submitted["generationTime"],
        "track_id": track_id,
        "meta": submitted["meta"],
    }


def test_processing_becomes_fetchable_after_the_eta(
    sandbox: SandboxServer, receiver: Receiver
) -> None:
    hook = receiver.new_hook()
    submitted_at = time.monotonic()
    body = text2img(sandbox, "a tower [sandbox:processing]", webhook=hook, track_id="t").json()

    assert body["status"] == "processing"
    assert isinstance(body["eta"], float)
    assert 0 < body["eta"] <= ETA
    assert body["output"] == []
    fetch_paths = [
        body["fetch_result"],
        f"{sandbox.modelslab_base_url}/v6/images/fetch/{body['id']}",
    ]
    assert fetch_paths[0] == fetch_paths[1]
    by_request_id = f"{sandbox.modelslab_base_url}/v6/images/fetch"
    assert requests.get(body["future_links"][0], timeout=10).status_code == 404
    early = fetch(by_request_id, request_id=str(body["id"]))
    assert (early.status_code, early.json()["status"]) == (200, "processing")

    arrived_at, callback = receiver.next(hook)

    assert arrived_at - submitted_at >= ETA
    assert callback["status"] == "success"
    for answer in (fetch(fetch_paths[0]), fetch(by_request_id, request_id=body["id"])):
        ready = answer.json()
        assert (answer.status_code, ready["status"]) == (200, "success")
        assert ready["output"] == body["future_links"] == callback["output"]
    image = image_at(body["future_links"][0])
    assert image.size == (512, 512)


def test_processing400_answers_processing_with_http_400_until_ready(
    sandbox: SandboxServer,
) -> None:
    body = text2img(sandbox, "a dune [sandbox:processing400]", width=64, height=64).json()
    assert body["status"] == "processing"

    early = fetch(body["fetch_result"])
    assert (early.status_code, early.json()["status"]) == (400, "processing")
    time.sleep(early.json()["eta"] + 0.05)
    late = fetch(body["fetch_result"])
    assert (late.status_code, late.json()["status"]) == (200, "success")


def test_processing_output_may_be_an_empty_string(sandbox: SandboxServer) -> None:
    body = text2img(sandbox, "a cove [sandbox:processing][sandbox:output-empty-string]").json()
    assert (body["status"], body["output"]) == ("processing", "")


def test_webhook_twice_sends_the_same_body_twice(
    sandbox: SandboxServer, receiver: Receiver
) -> None:
    hook = receiver.new_hook()
    text2img(sandbox, "a mill [sandbox:webhook-twice]", width=64, height=64, webhook=hook)

    _, first = receiver.next(hook)
    _, second = receiver.next(hook)
    assert first == second
    assert first["status"] == "success"


def test_webhook_never_sends_nothing_but_fetch_still_works(
    sandbox: SandboxServer, receiver: Receiver
) -> None:
    hook = receiver.new_hook()
    prompt = "a moor [sandbox:processing,eta=0.1,webhook-never]"
    body = text2img(sandbox, prompt, width=64, height=64, webhook=hook).json()

    receiver.assert_none(hook, wait=0.1 + WEBHOOK_DELAY + 0.3)
    assert fetch(body["fetch_result"]).json()["status"] == "success"


def test_webhook_late_comes_after_the_longer_delay(
    sandbox: SandboxServer, receiver: Receiver
) -> None:
    hook = receiver.new_hook()
    submitted_at = time.monotonic()
    text2img(sandbox, "a pier [sandbox:webhook-delay=0.5]", width=64, height=64, webhook=hook)

    arrived_at, callback = receiver.next(hook)
    assert arrived_at - submitted_at >= 0.5
    assert callback["status"] == "success"

    late_hook = receiver.new_hook()
    text2img(sandbox, "a quay [sandbox:webhook-late]", width=64, height=64, webhook=late_hook)
    receiver.assert_none(late_hook, wait=0.5)  # the sandbox's late delay is 1 s here
    assert receiver.next(late_hook)[1]["status"] == "success"


@pytest.mark.parametrize(("marker", "message_key"), [("", "message"), (",messege", "messege")])
def test_fail_reports_failed_by_webhook_and_fetch(
    sandbox: SandboxServer, receiver: Receiver, marker: str, message_key: str
) -> None:
    hook = receiver.new_hook()
    body = text2img(sandbox, f"a ruin [sandbox:fail{marker}]", webhook=hook, track_id="t-9").json()
    assert body["status"] == "processing"

    _, callback = receiver.next(hook)

    assert callback == {
        "status": "failed",
        "id": body["id"],
        message_key: "Failed, Try Again",
        "track_id": "t-9",
    }
    fetched = fetch(body["fetch_result"]).json()
    assert (fetched["status"], fetched[message_key]) == ("failed", "Failed, Try Again")


def test_fail_n_fails_only_the_first_generations_of_a_prompt(sandbox: SandboxServer) -> None:
    prompt = f"a ruin {uuid.uuid4().hex} [sandbox:fail=1,eta=0]"
    first = text2img(sandbox, prompt, width=64, height=64).json()
    assert first["status"] == "processing"
    assert fetch(first["fetch_result"]).json()["status"] == "failed"
    # Trying again helps, as ModelsLab's "Failed, Try Again" says it may.
    assert text2img(sandbox, prompt, width=64, height=64).json()["status"] == "success"


def test_error_mode_refuses_at_submit(sandbox: SandboxServer) -> None:
    response = text2img(sandbox, "a wall [sandbox:error]")

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "error"
    assert isinstance(body["message"], str)
    assert body["message"]
    assert "id" not in body


def test_ratelimit_answers_429_for_the_first_attempts_then_succeeds(
    sandbox: SandboxServer,
) -> None:
    prompt = f"a gate {uuid.uuid4().hex} [sandbox:ratelimit=2,retry-after=3]"
    answers = [text2img(sandbox, prompt, width=64, height=64) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [429, 429, 200]
    assert answers[0].json() == {
        "status": "error",
        "message": "Rate limit exceeded. Maximum 5 queued requests allowed.",
        "retry_after": 3,
    }
    assert answers[2].json()["status"] == "success"
    other = text2img(sandbox, f"another {prompt}", width=64, height=64)
    assert other.status_code == 429  # counted per prompt text


@pytest.mark.parametrize(
    ("prompt", "fields"),
    [
        ("a kiln [sandbox:base64]", {}),
        ("a kiln", {"base64": True}),
        ("a kiln", {"base64": "yes"}),
    ],
)
def test_base64_outputs_are_text_files_holding_the_png(
    sandbox: SandboxServer, prompt: str, fields: dict[str, Any]
) -> None:
    body = text2img(sandbox, prompt, width=96, height=80, seed=3, **fields).json()

    assert body["meta"]["base64"] == "yes"
    url = body["output"][0]
    assert url.endswith(".base64")
    text = requests.get(url, timeout=10)
    assert text.headers["Content-Type"].startswith("text/plain")
    prefix, _, data = text.text.partition(",")
    assert prefix == "data:image/png;base64"
    image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
    assert (image.format, image.size) == ("PNG", (96, 80))


def test_proxy_object_mode(sandbox: SandboxServer) -> None:
    body = text2img(sandbox, "a dam [sandbox:proxy-object]", width=64, height=64, samples=2).json()
    assert body["proxy_links"] == {"0": body["output"][0], "1": body["output"][1]}


@pytest.mark.parametrize(("marker", "expected_type"), [("id-string", str), ("id-null", type(None))])
def test_id_types(sandbox: SandboxServer, marker: str, expected_type: type) -> None:
    body = text2img(sandbox, f"a road [sandbox:processing,{marker}]").json()

    assert isinstance(body["id"], expected_type)
    assert body["fetch_result"].rsplit("/", 1)[1].isdigit()  # still fetchable by its URL
    assert fetch(body["fetch_result"]).json()["status"] == "processing"


def test_img2img_needs_init_image_urls(sandbox: SandboxServer) -> None:
    url = f"{sandbox.modelslab_base_url}/v6/images/img2img"
    base = {"key": "k", "model_id": "flux-kontext-dev", "prompt": "merge", "width": 64}

    missing = requests.post(url, json=base, timeout=10).json()
    not_url = requests.post(url, json={**base, "init_image": "in.png"}, timeout=10).json()
    both = {**base, "init_image": INIT_IMAGE, "init_image_2": INIT_IMAGE, "height": 64}
    ok = requests.post(url, json=both, timeout=10).json()

    assert missing == {
        "status": "error",
        "message": {"init_image": ["The init image field is required."]},
    }
    assert (not_url["status"], not_url["message"]) == (
        "error",
        "The init image must be a valid URL.",
    )
    assert ok["status"] == "success"
    assert ok["meta"]["init_image_2"] == INIT_IMAGE
    assert image_at(ok["output"][0]).size == (64, 64)


def test_enterprise_instant_response_and_fetch_path(sandbox: SandboxServer) -> None:
    url = f"{sandbox.modelslab_base_url}/v1/enterprise/flux_kontext_dev/img2img"
    base = {"key": "enterprise", "prompt": "a ship", "init_image": INIT_IMAGE, "width": 64}

    immediate = requests.post(url, json=base, timeout=10).json()
    queued = requests.post(url, json={**base, "instant_response": True}, timeout=10).json()

    assert immediate["status"] == "success"
    assert queued["status"] == "processing"
    enterprise_fetch = (
        f"{sandbox.modelslab_base_url}/v1/enterprise/flux_kontext_dev/fetch/{queued['id']}"
    )
    assert queued["fetch_result"] == enterprise_fetch
    assert fetch(enterprise_fetch, key="enterprise").json()["status"] == "processing"
    time.sleep(queued["eta"] + 0.05)
    ready = fetch(enterprise_fetch, key="enterprise").json()
    assert ready["status"] == "success"
    assert image_at(ready["output"][0]).size == (64, 512)


def test_bad_key_is_refused_with_401(sandbox: SandboxServer) -> None:
    refused = text2img(sandbox, "a barn", key="bad-key")
    processing = text2img(sandbox, "a barn [sandbox:processing]").json()
    refused_fetch = fetch(processing["fetch_result"], key="bad-key")

    for response in (refused, refused_fetch):
        assert response.status_code == 401
        assert response.json() == {"status": "error", "message": "Invalid API key"}


def test_missing_prompt_answers_200_with_an_object_message(sandbox: SandboxServer) -> None:
    url = f"{sandbox.modelslab_base_url}/v6/images/text2img"
    response = requests.post(url, json={"key": "k", "model_id": "flux"}, timeout=10)

    assert response.status_code == 200
    assert response.json() == {
        "status": "error",
        "message": {"prompt": ["The prompt field is required."]},
    }


def test_an_unknown_marker_or_id_is_an_error(sandbox: SandboxServer) -> None:
    unknown = text2img(sandbox, "a cave [sandbox:explode]")
    missing = fetch(f"{sandbox.modelslab_base_url}/v6/images/fetch/1")

    assert (unknown.status_code, unknown.json()["status"]) == (400, "error")
    assert "explode" in unknown.json()["message"]
    assert (missing.status_code, missing.json()["status"]) == (404, "error")


def test_aimlapi_answers_the_data_shape_with_jpeg_urls(sandbox: SandboxServer) -> None:
    response = aimlapi(sandbox, prompt="a hedgehog", num_images=2)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"data", "meta"}
    assert [item["b64_json"] for item in body["data"]] == [None, None]
    image = image_at(body["data"][0]["url"])
    assert (image.format, image.size) == ("JPEG", (1184, 880))  # 16:9, the documented default


def test_aimlapi_images_shape(sandbox: SandboxServer) -> None:
    response = aimlapi(
        sandbox,
        prompt="a squirrel [sandbox:images-shape]",
        image_url=[INIT_IMAGE, INIT_IMAGE],
        aspect_ratio="1:1",
        output_format="png",
        seed=99,
    )

    body = response.json()
    assert (body["seed"], body["has_nsfw_concepts"]) == (99, [False])
    (item,) = body["images"]
    assert (item["content_type"], item["width"], item["height"]) == ("image/png", 1024, 1024)
    image = image_at(item["url"])
    assert (image.format, image.size) == ("PNG", (1024, 1024))


def test_aimlapi_b64_json_holds_the_image(sandbox: SandboxServer) -> None:
    body = aimlapi(sandbox, prompt="a rabbit [sandbox:b64]", aspect_ratio="9:16").json()

    (item,) = body["data"]
    assert item["url"] is None
    image = Image.open(io.BytesIO(base64.b64decode(item["b64_json"], validate=True)))
    assert (image.format, image.size) == ("JPEG", (752, 1392))


def test_aimlapi_errors(sandbox: SandboxServer) -> None:
    unauthorised = aimlapi(sandbox, key="bad-key", prompt="p")
    too_many_images = aimlapi(sandbox, prompt="p", image_url=[INIT_IMAGE] * 5)
    wrong_model = aimlapi(sandbox, prompt="p", model="flux/dev")

    assert unauthorised.status_code == 401
    for response in (too_many_images, wrong_model):
        assert response.status_code == 400
        body = response.json()
        assert set(body) == {"message", "path", "requestId", "statusCode", "timestamp"}
        assert body["statusCode"] == 400


def test_default_modes_come_from_the_config(receiver: Receiver) -> None:
    config = SandboxConfig(modes=("processing", "eta=0.1"), webhook_delay=0.0)
    server, thread = start_in_thread("127.0.0.1", 0, config)
    try:
        hook = receiver.new_hook()
        body = text2img(server, "a plain", width=64, height=64, webhook=hook).json()
        assert body["status"] == "processing"
        assert receiver.next(hook)[1]["status"] == "success"
        assert requests.get(f"{server.url}/healthz", timeout=10).json() == {"status": "ok"}
    finally:
        server.shutdown()
        thread.join(5)
    assert not thread.is_alive()


def test_shutdown_cancels_webhooks_not_yet_sent(receiver: Receiver) -> None:
    server, thread = start_in_thread("127.0.0.1", 0, SandboxConfig(webhook_delay=0.3))
    hook = receiver.new_hook()
    text2img(server, "a field", width=64, height=64, webhook=hook)

    server.shutdown()
    thread.join(5)

    receiver.assert_none(hook, wait=0.5)


def test_a_bad_default_mode_fails_at_start() -> None:
    with pytest.raises(ModeError, match="nonsense"):
        SandboxConfig(modes=("nonsense",))


def test_provider_routes_also_answer_at_the_root(sandbox: SandboxServer) -> None:
    """MODELSLAB_BASE_URL / AIMLAPI_BASE_URL may be the sandbox's bare address."""
    ml = requests.post(
        f"{sandbox.url}/v6/images/text2img",
        json={"key": "k", "model_id": "m", "prompt": "root"},
        timeout=10,
    ).json()
    assert ml["status"] == "success"
    fetched = requests.post(
        f"{sandbox.url}/v6/images/fetch/{ml['id']}", json={"key": "k"}, timeout=10
    )
    assert fetched.json()["status"] == "success"
    aiml = requests.post(
        f"{sandbox.url}/v1/images/generations",
        json={
            "model": "flux/kontext-pro/image-to-image",
            "prompt": "root",
            "image_url": "https://x.test/a.png",
        },
        headers={"Authorization": "Bearer k"},
        timeout=10,
    )
    assert aiml.status_code == 200 and aiml.json()["data"][0]["url"]
