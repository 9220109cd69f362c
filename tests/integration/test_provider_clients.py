"""The provider clients against a real HTTP server on loopback replaying documented answers."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from service.providers.aimlapi import AimlApiClient
from service.providers.base import (
    ProviderAuthError,
    ProviderError,
    ProviderRejected,
    ResultStatus,
)
from service.providers.modelslab import ModelsLabClient
from tests.support.s3 import free_port

KEY = "ml-key-STANDARD-0001"
ENTERPRISE_KEY = "ml-key-ENTERPRISE-0002"
AIML_KEY = "aiml-key-0003"
ALL_KEYS = (KEY, ENTERPRISE_KEY, AIML_KEY)

TEXT2IMG = "modelslab/text2img"
IMG2IMG = "modelslab/img2img"
ENTERPRISE = "modelslab-enterprise/flux_kontext_dev/img2img"
AIMLAPI = "aimlapi/images/generations"
HOOK = "https://genvault.example/webhooks/modelslab/trk-1?token=tok-SECRET"

SUCCESS = {
    "status": "success",
    "generationTime": 0.65,
    "id": 81443063,
    "output": ["https://pub-3626123a908346a7a8be8d9295f44e26.r2.dev/generations/a-0.png"],
    "proxy_links": ["https://cdn2.stablediffusionapi.com/generations/a-0.png"],
    "nsfw_content_detected": False,
    "meta": {"prompt": "p", "seed": 1, "width": 512, "height": 512, "base64": "no"},
}
PROCESSING = {
    "status": "processing",
    "id": 155918900,
    "eta": 416.94,
    "message": "Try to fetch request after seconds estimated",
    "fetch_result": "https://modelslab.com/api/v6/images/fetch/155918900",
    "output": [],
    "future_links": ["https://pub-3626123a908346a7a8be8d9295f44e26.r2.dev/generations/f.png"],
    "meta": {},
    "tip": "…",
}


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # a dict/list is sent as JSON, str/bytes as they are
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    raw_path: str
    headers: dict[str, str]
    body: Any


class ReplayServer:
    """Answers each path with the replies queued for it, and records every request."""

    def __init__(self) -> None:
        self.replies: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        self.release = threading.Event()
        self.url = ""

    def on(self, path: str, *replies: Reply) -> None:
        self.replies.setdefault(path, []).extend(replies)

    def __call__(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        raw = request.get_data()
        body = json.loads(raw) if raw else None
        raw_path = environ.get("RAW_URI", request.path)
        self.seen.append(Seen(request.method, request.path, raw_path, dict(request.headers), body))
        queue = self.replies.get(request.path)
        reply = queue.pop(0) if queue else Reply(404, {"status": "error", "message": "no reply"})
        if reply.delay:
            self.release.wait(reply.delay)
        data = reply.body
        if isinstance(data, dict | list):
            data = json.dumps(data)
            reply.headers.setdefault("Content-Type", "application/json")
        response = Response(data or b"", status=reply.status, headers=reply.headers)
        return response(environ, start_response)


def _serve() -> Iterator[ReplayServer]:
    app = ReplayServer()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    app.url = f"http://127.0.0.1:{server.server_port}"
    # A short poll interval: shutdown() waits up to one interval.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield app
    finally:
        app.release.set()
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    yield from _serve()


@pytest.fixture
def elsewhere() -> Iterator[ReplayServer]:
    """A second host: anything that reaches it with a key is a leak."""
    yield from _serve()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


@pytest.fixture
def modelslab(server: ReplayServer, session: requests.Session) -> ModelsLabClient:
    return ModelsLabClient(server.url + "/api", KEY, ENTERPRISE_KEY, session, timeout=2.0)


@pytest.fixture
def aiml(server: ReplayServer, session: requests.Session) -> AimlApiClient:
    return AimlApiClient(server.url, AIML_KEY, session, timeout=2.0)


def assert_no_key(*texts: Any) -> None:
    for text in texts:
        dumped = text if isinstance(text, str) else json.dumps(text, default=str)
        assert not any(key in dumped for key in ALL_KEYS), dumped


def submit(client: ModelsLabClient, endpoint: str = TEXT2IMG, **params: Any) -> Any:
    body = {"model_id": "m", "prompt": "p", **params}
    if endpoint != TEXT2IMG:
        body = {"prompt": "p", "init_image": "https://example.com/a.png", **params}
    return client.submit(endpoint, body, webhook_url=HOOK, track_id="trk-1")


# ModelsLab: submit


def test_submit_sends_key_webhook_track_id_and_sdk_header(
    modelslab: ModelsLabClient, server: ReplayServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.on("/api/v6/images/text2img", Reply(200, SUCCESS))
    caplog.set_level("DEBUG")
    result = submit(modelslab, width=512)

    [seen] = server.seen
    assert seen.method == "POST"
    assert seen.headers["X-Requested-With"] == "modelslab-py"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.body == {
        "model_id": "m",
        "prompt": "p",
        "width": 512,
        "key": KEY,
        "track_id": "trk-1",
        "webhook": HOOK,
    }
    assert result.status is ResultStatus.SUCCESS
    assert result.request_id == "81443063"
    assert result.outputs == tuple(SUCCESS["output"])  # type: ignore[arg-type]
    assert_no_key(result.raw, caplog.text, repr(modelslab))


def test_submit_params_cannot_override_the_service_fields(
    modelslab: ModelsLabClient, server: ReplayServer
) -> None:
    server.on("/api/v6/images/text2img", Reply(200, SUCCESS))
    submit(modelslab, key="theirs", webhook="https://evil.test/", track_id="x")
    body = server.seen[0].body
    assert (body["key"], body["webhook"], body["track_id"]) == (KEY, HOOK, "trk-1")


def test_submit_processing(modelslab: ModelsLabClient, server: ReplayServer) -> None:
    server.on("/api/v6/images/img2img", Reply(200, PROCESSING))
    result = submit(modelslab, IMG2IMG, model_id="flux-kontext-dev")
    assert result.status is ResultStatus.PROCESSING
    assert result.request_id == "155918900"
    assert result.eta_seconds == pytest.approx(416.94)
    assert result.fetch_url == PROCESSING["fetch_result"]
    assert result.outputs == ()


def test_processing_body_with_http_400_is_processing(
    modelslab: ModelsLabClient, server: ReplayServer
) -> None:
    server.on("/api/v6/images/text2img", Reply(400, PROCESSING))
    assert submit(modelslab).status is ResultStatus.PROCESSING


def test_error_body_with_http_200_is_a_failed_result(
    modelslab: ModelsLabClient, server: ReplayServer
) -> None:
    body = {"status": "failed", "id": "", "message": "Failed, Try Again", "output": ""}
    server.on("/api/v6/images/text2img", Reply(200, body))
    result = submit(modelslab)
    assert result.status is ResultStatus.FAILED
    assert (result.error_code, result.error_message) == ("provider_error", "Failed, Try Again")


def test_validation_error_with_http_400_is_rejected_readably(
    modelslab: ModelsLabClient, server: ReplayServer
) -> None:
    body = {"status": "error", "message": {"prompt": ["The prompt field is required."]}}
    server.on("/api/v6/images/text2img", Reply(400, body))
    with pytest.raises(ProviderRejected) as caught:
        submit(modelslab)
    assert "prompt: The prompt field is required." in caught.value.message


def test_invalid_api_key_in_http_200_is_an_auth_error(
    modelslab: ModelsLabClient, server: ReplayServer
) -> None:
    server.on(
        "/api/v6/images/text2img", Reply(200, {"status": "error", "message": "Invalid API key"})
    )
    with pytest.raises(ProviderAuthError) as caught:
        submit(modelslab)
    assert caught.value.message == "ModelsLab rejected the API key: check MODELSLAB_API_KEY"


def test_429_uses_the_bodys_retry_after(modelslab: ModelsLabClient, server: ReplayServer) -> None:
    body = {
        "status": "error",
        "message": "Rate limit exceeded. Maximum 5 queued requests allowed.",
        "retry_after": 30,
    }
    server.on("/api/v6/images/text2img", Reply(429, body))
    with pytest.raises(ProviderError) as caught:
        submit(modelslab)
    assert caught.value.retry_after == 30
    assert "Maximum 5 queued requests" in caught.value.message


def test_429_without_body_uses_the_retry_after_header(
    modelslab: ModelsLabClient, server: ReplayServer
) -> None:
    server.on("/api/v6/images/text2img", Reply(429, "", {"Retry-After": "7"}))
    with pytest.raises(ProviderError) as caught:
        submit(modelslab)
    assert caught.value.retry_after == 7


def test_spam_filter_rate_limit_in_http_200_waits_30_seconds(
    modelslab: ModelsLabClient, server: ReplayServer
) -> None:
    server.on(
        "/api/v6/images/text2img", Reply(200, {"status": "error", "message": "Rate limit exceeded"})
    )
    with pytest.raises(ProviderError) as caught:
        submit(modelslab)
    assert caught.value.retry_after == 30


@pytest.mark.parametrize(
    ("endpoint", "path", "status", "expected"),
    [
        (TEXT2IMG, "/api/v6/images/text2img", 401, "check MODELSLAB_API_KEY"),
        (
            ENTERPRISE,
            "/api/v1/enterprise/flux_kontext_dev/img2img",
            401,
            "check MODELSLAB_ENTERPRISE_API_KEY",
        ),
        (TEXT2IMG, "/api/v6/images/text2img", 402, "no credits left: top up"),
        (IMG2IMG, "/api/v6/images/img2img", 403, "does not allow modelslab/img2img"),
    ],
)
def test_account_errors_tell_the_operator_what_to_do(
    modelslab: ModelsLabClient,
    server: ReplayServer,
    endpoint: str,
    path: str,
    status: int,
    expected: str,
) -> None:
    # Providers echo the key back at times; it must not travel on in our messages.
    server.on(
        path, Reply(status, {"status": "error", "message": f"bad key {KEY} {ENTERPRISE_KEY}"})
    )
    with pytest.raises(ProviderAuthError) as caught:
        submit(modelslab, endpoint)
    assert expected in caught.value.message
    assert_no_key(str(caught.value))


@pytest.mark.parametrize(
    "reply",
    [
        Reply(500, {"status": "error", "message": "Server Error"}),
        Reply(503, "<html>Service Unavailable</html>", {"Content-Type": "text/html"}),
        Reply(200, "<html>Bad gateway</html>", {"Content-Type": "text/html"}),
    ],
)
def test_server_errors_and_broken_bodies_are_transient(
    modelslab: ModelsLabClient, server: ReplayServer, reply: Reply
) -> None:
    server.on("/api/v6/images/text2img", reply)
    with pytest.raises(ProviderError) as caught:
        submit(modelslab)
    assert f"HTTP {reply.status}" in caught.value.message


def test_non_json_4xx_is_rejected(modelslab: ModelsLabClient, server: ReplayServer) -> None:
    server.on("/api/v6/images/text2img", Reply(404, "<html>Not Found</html>"))
    with pytest.raises(ProviderRejected):
        submit(modelslab)


def test_timeout_is_transient(server: ReplayServer, session: requests.Session) -> None:
    client = ModelsLabClient(server.url + "/api", KEY, None, session, timeout=0.2)
    server.on("/api/v6/images/text2img", Reply(200, SUCCESS, delay=2.0))
    with pytest.raises(ProviderError) as caught:
        submit(client)
    assert caught.value.message == "ModelsLab did not answer within 0.2 s"
    assert caught.value.__suppress_context__  # the request, key and all, is not chained


def test_connection_refused_is_transient(session: requests.Session) -> None:
    client = ModelsLabClient(f"http://127.0.0.1:{free_port()}/api", KEY, None, session, 1.0)
    with pytest.raises(ProviderError) as caught:
        submit(client)
    assert "Could not reach ModelsLab" in caught.value.message


def test_redirects_are_not_followed_with_the_key(
    modelslab: ModelsLabClient, server: ReplayServer, elsewhere: ReplayServer
) -> None:
    server.on("/api/v6/images/text2img", Reply(307, "", {"Location": elsewhere.url + "/steal"}))
    with pytest.raises(ProviderRejected):
        submit(modelslab)
    assert elsewhere.seen == []


def test_missing_key_names_the_env_var_and_sends_nothing(
    server: ReplayServer, session: requests.Session
) -> None:
    client = ModelsLabClient(server.url + "/api", KEY, None, session, timeout=1.0)
    with pytest.raises(ProviderAuthError) as caught:
        submit(client, ENTERPRISE)
    assert "MODELSLAB_ENTERPRISE_API_KEY" in caught.value.message
    client = ModelsLabClient(server.url + "/api", None, ENTERPRISE_KEY, session, timeout=1.0)
    with pytest.raises(ProviderAuthError) as caught:
        submit(client, TEXT2IMG)
    assert "MODELSLAB_API_KEY" in caught.value.message
    assert server.seen == []


def test_enterprise_endpoint_uses_the_enterprise_key(
    modelslab: ModelsLabClient, server: ReplayServer
) -> None:
    server.on("/api/v1/enterprise/flux_kontext_dev/img2img", Reply(200, {**PROCESSING, "id": None}))
    result = submit(modelslab, ENTERPRISE)
    assert server.seen[0].body["key"] == ENTERPRISE_KEY
    assert result.request_id is None


# ModelsLab: fetch


def test_fetch_goes_to_the_base_url_with_the_id_even_when_fetch_result_is_on_it(
    modelslab: ModelsLabClient, server: ReplayServer
) -> None:
    server.on("/api/v6/images/fetch/155918900", Reply(200, SUCCESS))
    result = modelslab.fetch(TEXT2IMG, "155918900", server.url + "/api/v3/fetch/155918900")
    assert [(s.path, s.body) for s in server.seen] == [
        ("/api/v6/images/fetch/155918900", {"key": KEY})
    ]
    assert server.seen[0].headers["X-Requested-With"] == "modelslab-py"
    assert result.status is ResultStatus.SUCCESS


def test_without_an_id_fetch_result_is_used_only_inside_the_base_url(
    modelslab: ModelsLabClient, server: ReplayServer
) -> None:
    server.on("/api/v1/enterprise/flux_kontext_dev/fetch/q-1", Reply(200, SUCCESS))
    modelslab.fetch(ENTERPRISE, None, server.url + "/api/v1/enterprise/flux_kontext_dev/fetch/q-1")
    assert [(s.path, s.body) for s in server.seen] == [
        ("/api/v1/enterprise/flux_kontext_dev/fetch/q-1", {"key": ENTERPRISE_KEY})
    ]
    with pytest.raises(ProviderRejected, match="not under MODELSLAB_BASE_URL"):
        modelslab.fetch(ENTERPRISE, None, server.url + "/admin/fetch/q-1")
    assert len(server.seen) == 1


def test_fetch_ignores_a_fetch_result_on_another_host(
    modelslab: ModelsLabClient, server: ReplayServer, elsewhere: ReplayServer
) -> None:
    server.on("/api/v6/images/fetch/155918900", Reply(200, PROCESSING))
    result = modelslab.fetch(TEXT2IMG, "155918900", elsewhere.url + "/api/v6/images/fetch/1")
    assert elsewhere.seen == []
    assert [s.path for s in server.seen] == ["/api/v6/images/fetch/155918900"]
    assert result.status is ResultStatus.PROCESSING


def test_fetch_without_fetch_result_uses_the_documented_path(
    modelslab: ModelsLabClient, server: ReplayServer
) -> None:
    server.on("/api/v6/images/fetch/81443063", Reply(200, SUCCESS))
    modelslab.fetch(IMG2IMG, "81443063", None)
    assert (server.seen[0].path, server.seen[0].body) == (
        "/api/v6/images/fetch/81443063",
        {"key": KEY},
    )


def test_enterprise_fetch_uses_its_own_path_and_key(
    modelslab: ModelsLabClient, server: ReplayServer
) -> None:
    server.on("/api/v1/enterprise/flux_kontext_dev/fetch/42", Reply(200, SUCCESS))
    modelslab.fetch(ENTERPRISE, "42", None)
    assert server.seen[0].body == {"key": ENTERPRISE_KEY}


def test_fetch_quotes_the_request_id(modelslab: ModelsLabClient, server: ReplayServer) -> None:
    # An id from a provider body is one path segment, never a way to another endpoint.
    server.on("/api/v6/images/fetch/../admin", Reply(200, PROCESSING))
    modelslab.fetch(TEXT2IMG, "../admin", None)
    assert server.seen[0].raw_path == "/api/v6/images/fetch/..%2Fadmin"


def test_fetch_with_nothing_usable_is_rejected(
    modelslab: ModelsLabClient, server: ReplayServer, elsewhere: ReplayServer
) -> None:
    with pytest.raises(ProviderRejected):
        modelslab.fetch(ENTERPRISE, None, elsewhere.url + "/fetch/1")
    with pytest.raises(ProviderRejected):
        modelslab.fetch(ENTERPRISE, None, None)
    assert server.seen == [] and elsewhere.seen == []


def test_parse_callback_scrubs_echoed_secrets(modelslab: ModelsLabClient) -> None:
    body = {
        **SUCCESS,
        "track_id": 12,
        "meta": {"key": KEY, "webhook": HOOK, "note": ENTERPRISE_KEY},
    }
    result = modelslab.parse_callback(body)
    assert result.track_id == "12"
    assert_no_key(result.raw)
    assert "tok-SECRET" not in json.dumps(result.raw)


# AI/ML API

AIML_PARAMS = {
    "model": "flux/kontext-pro/image-to-image",
    "prompt": "make it winter",
    "image_url": "https://example.com/a.png",
}


def test_aimlapi_submit_is_bearer_authenticated_and_synchronous(
    aiml: AimlApiClient, server: ReplayServer, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"data": [{"url": "https://cdn.aimlapi.com/generations/h/1.png", "b64_json": None}]}
    server.on("/v1/images/generations", Reply(200, body))
    caplog.set_level("DEBUG")
    result = aiml.submit(AIMLAPI, AIML_PARAMS, webhook_url=None, track_id="trk-9")
    [seen] = server.seen
    assert seen.headers["Authorization"] == f"Bearer {AIML_KEY}"
    assert seen.body == AIML_PARAMS  # no webhook, no track_id, no key in the body
    assert result.status is ResultStatus.SUCCESS
    assert result.outputs == ("https://cdn.aimlapi.com/generations/h/1.png",)
    assert_no_key(result.raw, caplog.text, repr(aiml))


def test_aimlapi_images_shape_with_inline_image(aiml: AimlApiClient, server: ReplayServer) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()
    body = {
        "images": [
            {"url": "https://v3b.fal.media/files/x.jpg", "width": 1184, "height": 880},
        ],
        "data": [{"url": None, "b64_json": png}],
        "has_nsfw_concepts": [True],
    }
    server.on("/v1/images/generations", Reply(201, body))
    result = aiml.submit(AIMLAPI, AIML_PARAMS, webhook_url=None, track_id="t")
    assert result.outputs == (f"data:image/png;base64,{png}",)
    assert result.nsfw is True


@pytest.mark.parametrize(
    ("reply", "error", "expected"),
    [
        (
            Reply(401, {"message": "Unauthorized", "statusCode": 401}),
            ProviderAuthError,
            "AIMLAPI_API_KEY",
        ),
        (
            Reply(403, {"message": "Not enough credits", "statusCode": 403}),
            ProviderAuthError,
            "top up",
        ),
        (
            Reply(
                400,
                {
                    "message": ["prompt must be shorter than or equal to 4000 characters"],
                    "path": "/v1/images/generations",
                    "requestId": "r-1",
                    "statusCode": 400,
                    "timestamp": "2025-06-12T12:00:00.000Z",
                },
            ),
            ProviderRejected,
            "prompt must be shorter than or equal to 4000 characters",
        ),
        (
            Reply(404, {"message": "Model not found", "statusCode": 404}),
            ProviderRejected,
            "Model not found",
        ),
        (Reply(500, {"message": "Internal error", "statusCode": 500}), ProviderError, "HTTP 500"),
        (Reply(502, "<html>bad gateway</html>"), ProviderError, "HTTP 502"),
    ],
)
def test_aimlapi_errors(
    aiml: AimlApiClient, server: ReplayServer, reply: Reply, error: type[Exception], expected: str
) -> None:
    if isinstance(reply.body, dict):
        reply.body["echo"] = AIML_KEY
        reply.body["message"] = [reply.body["message"], f"key {AIML_KEY}"]
    server.on("/v1/images/generations", reply)
    with pytest.raises(error) as caught:
        aiml.submit(AIMLAPI, AIML_PARAMS, webhook_url=None, track_id="t")
    assert expected in str(caught.value)
    assert_no_key(str(caught.value))


def test_aimlapi_429_waits(aiml: AimlApiClient, server: ReplayServer) -> None:
    server.on(
        "/v1/images/generations",
        Reply(429, {"message": "Too Many Requests"}, {"Retry-After": "12"}),
    )
    with pytest.raises(ProviderError) as caught:
        aiml.submit(AIMLAPI, AIML_PARAMS, webhook_url=None, track_id="t")
    assert caught.value.retry_after == 12


def test_aimlapi_timeout(server: ReplayServer, session: requests.Session) -> None:
    client = AimlApiClient(server.url, AIML_KEY, session, timeout=0.2)
    server.on("/v1/images/generations", Reply(200, {"data": []}, delay=2.0))
    with pytest.raises(ProviderError, match="did not answer"):
        client.submit(AIMLAPI, AIML_PARAMS, webhook_url=None, track_id="t")


def test_aimlapi_without_key_or_webhooks(server: ReplayServer, session: requests.Session) -> None:
    client = AimlApiClient(server.url, None, session, timeout=1.0)
    with pytest.raises(ProviderAuthError, match="AIMLAPI_API_KEY"):
        client.submit(AIMLAPI, AIML_PARAMS, webhook_url=None, track_id="t")
    with pytest.raises(ProviderRejected):
        client.fetch(AIMLAPI, "x", None)
    with pytest.raises(ProviderRejected):
        client.parse_callback({"status": "success"})
    assert server.seen == []


def test_clients_refuse_the_other_providers_endpoints(
    modelslab: ModelsLabClient, aiml: AimlApiClient, server: ReplayServer
) -> None:
    with pytest.raises(ProviderRejected):
        modelslab.submit(AIMLAPI, AIML_PARAMS, webhook_url=None, track_id="t")
    with pytest.raises(ProviderRejected):
        aiml.submit(TEXT2IMG, {"prompt": "p"}, webhook_url=None, track_id="t")
    assert server.seen == []
