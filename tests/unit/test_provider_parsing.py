"""Every body shape and quirk of PROVIDERS.md, through the parsers, into ProviderResult."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from service.providers.base import ResultStatus
from service.providers.parsing import (
    image_data_uri,
    parse_aimlapi,
    parse_modelslab,
    readable_message,
    retry_after,
    scrub,
)

R2 = "https://pub-3626123a908346a7a8be8d9295f44e26.r2.dev/generations"
CDN = "https://cdn2.stablediffusionapi.com/generations"

# The documented bodies, as PROVIDERS.md shows them ("…" filled in).
SUCCESS = {
    "status": "success",
    "generationTime": 0.65,
    "id": 81443063,
    "output": [f"{R2}/604d1afb-dee3-4aa6-8d92-932337ecc147-0.png"],
    "proxy_links": [f"{CDN}/604d1afb-dee3-4aa6-8d92-932337ecc147-0.png"],
    "nsfw_content_detected": False,
    "meta": {
        "prompt": "a lighthouse",
        "seed": 1373787908,
        "width": 512,
        "height": 512,
        "base64": "no",
    },
}
PROCESSING = {
    "status": "processing",
    "id": 155918900,
    "eta": 416.94,
    "message": "Try to fetch request after seconds estimated",
    "fetch_result": "https://modelslab.com/api/v6/images/fetch/155918900",
    "output": [],
    "future_links": [f"{R2}/future-0.png"],
    "meta": {"prompt": "a lighthouse", "width": 512, "height": 512},
    "tip": "Get 20x faster image generation using enterprise plan.",
}
ERROR = {"status": "error", "message": "Invalid API key"}
FAILED = {"status": "failed", "id": "", "message": "Failed, Try Again", "output": ""}
RATE_LIMITED = {
    "status": "error",
    "message": "Rate limit exceeded. Maximum 5 queued requests allowed.",
    "retry_after": 30,
}
WEBHOOK_SUCCESS = {
    "status": "success",
    "id": 81443063,
    "output": [f"{R2}/hook-0.png"],
    "generationTime": 1.2,
    "track_id": "trk_abc",
    "meta": {"width": 1024, "height": 768},
}
WEBHOOK_FAILED = {"status": "failed", "id": 81443064, "message": "Out of memory", "track_id": 77}


def test_success_body() -> None:
    result = parse_modelslab(SUCCESS)
    assert result.status is ResultStatus.SUCCESS
    assert result.request_id == "81443063"
    assert result.outputs == (f"{R2}/604d1afb-dee3-4aa6-8d92-932337ecc147-0.png",)
    assert result.nsfw is False
    assert (result.width, result.height) == (512, 512)
    assert result.base64_files is False
    assert result.error_code is None and result.error_message is None
    assert result.raw == SUCCESS


def test_processing_body_keeps_id_eta_and_fetch_result_but_not_future_links() -> None:
    result = parse_modelslab(PROCESSING)
    assert result.status is ResultStatus.PROCESSING
    assert result.request_id == "155918900"
    assert result.eta_seconds == pytest.approx(416.94)
    assert result.fetch_url == "https://modelslab.com/api/v6/images/fetch/155918900"
    # future_links may answer 404 or HTML until ready: they are not outputs.
    assert result.outputs == ()
    assert result.error_message is None


def test_error_body() -> None:
    result = parse_modelslab(ERROR)
    assert result.status is ResultStatus.FAILED
    assert (result.error_code, result.error_message) == ("provider_error", "Invalid API key")
    assert result.request_id is None


def test_failed_body_with_empty_id_and_empty_string_output() -> None:
    result = parse_modelslab(FAILED)
    assert result.status is ResultStatus.FAILED
    assert result.request_id is None
    assert result.outputs == ()
    assert result.error_message == "Failed, Try Again"


def test_failed_body_without_message_still_explains() -> None:
    assert parse_modelslab({"status": "failed"}).error_message == (
        "ModelsLab reported a failure without a message"
    )


def test_rate_limit_body_reads_as_failed_with_its_message() -> None:
    # The client turns this into a retry; the parser only reports what it says.
    result = parse_modelslab(RATE_LIMITED)
    assert result.status is ResultStatus.FAILED
    assert result.error_message == "Rate limit exceeded. Maximum 5 queued requests allowed."
    assert retry_after(RATE_LIMITED, {}) == 30


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("success", ResultStatus.SUCCESS),
        ("processing", ResultStatus.PROCESSING),
        ("queued", ResultStatus.PROCESSING),
        ("error", ResultStatus.FAILED),
        ("failed", ResultStatus.FAILED),
        ("FAILED ", ResultStatus.FAILED),
        ("something-new", ResultStatus.PROCESSING),  # unknown moves nothing; a poll settles it
        (None, ResultStatus.PROCESSING),
    ],
)
def test_status_mapping(status: Any, expected: ResultStatus) -> None:
    assert parse_modelslab({"status": status}).status is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (81443063, "81443063"),
        ("81443063", "81443063"),
        ("req-7f", "req-7f"),
        (None, None),
        ("", None),
    ],
)
def test_id_is_int_string_or_null(value: Any, expected: str | None) -> None:
    assert parse_modelslab({**PROCESSING, "id": value}).request_id == expected


@pytest.mark.parametrize("output", [[], ""])
def test_output_while_processing_may_be_empty_list_or_empty_string(output: Any) -> None:
    assert parse_modelslab({**PROCESSING, "output": output}).outputs == ()


def test_proxy_links_are_the_fallback_when_success_has_no_output() -> None:
    assert parse_modelslab({**SUCCESS, "output": []}).outputs == (
        f"{CDN}/604d1afb-dee3-4aa6-8d92-932337ecc147-0.png",
    )
    # output wins whenever it has anything.
    assert parse_modelslab(SUCCESS).outputs[0].startswith(R2)


def test_proxy_links_as_an_object_keyed_by_index() -> None:
    body = {**SUCCESS, "output": "", "proxy_links": {"10": f"{CDN}/10.png", "2": f"{CDN}/2.png"}}
    assert parse_modelslab(body).outputs == (f"{CDN}/2.png", f"{CDN}/10.png")


def test_proxy_links_are_not_outputs_while_processing() -> None:
    body = {**PROCESSING, "proxy_links": [f"{CDN}/0.png"]}
    assert parse_modelslab(body).outputs == ()


def test_messege_legacy_spelling() -> None:
    result = parse_modelslab({"status": "error", "messege": "Model not found"})
    assert result.error_message == "Model not found"


def test_message_as_field_to_messages_object_is_flattened() -> None:
    body = {
        "status": "error",
        "message": {
            "prompt": ["The prompt field is required."],
            "width": ["The width must not be greater than 1024.", "Must be a number."],
        },
    }
    assert parse_modelslab(body).error_message == (
        "prompt: The prompt field is required.; "
        "width: The width must not be greater than 1024. Must be a number."
    )


def test_tips_warnings_and_webhook_status_are_ignored() -> None:
    noisy = {
        **SUCCESS,
        "tip": "x",
        "tip_1": {"nested": True},
        "tips": ["a", "b"],
        "warning": None,
        "webhook_status": "sent",
    }
    plain = parse_modelslab(SUCCESS)
    result = parse_modelslab(noisy)
    assert (result.status, result.outputs, result.request_id) == (
        plain.status,
        plain.outputs,
        plain.request_id,
    )


@pytest.mark.parametrize(("eta", "expected"), [(416.94, 416.94), (3, 3.0), ("12.5", 12.5)])
def test_eta_is_fractional_seconds(eta: Any, expected: float) -> None:
    assert parse_modelslab({**PROCESSING, "eta": eta}).eta_seconds == pytest.approx(expected)


@pytest.mark.parametrize("eta", [None, "soon", -4, True, float("nan")])
def test_unusable_eta_is_none(eta: Any) -> None:
    assert parse_modelslab({**PROCESSING, "eta": eta}).eta_seconds is None


def test_meta_with_w_and_h_instead_of_width_and_height() -> None:
    result = parse_modelslab({**SUCCESS, "meta": {"W": 768, "H": "1024"}})
    assert (result.width, result.height) == (768, 1024)


def test_missing_or_odd_meta() -> None:
    result = parse_modelslab({**SUCCESS, "meta": "…"})
    assert (result.width, result.height, result.base64_files) == (None, None, False)


@pytest.mark.parametrize(("flag", "expected"), [(True, True), (False, False), ("yes", True)])
def test_nsfw_content_detected(flag: Any, expected: bool) -> None:
    assert parse_modelslab({**SUCCESS, "nsfw_content_detected": flag}).nsfw is expected


def test_base64_outputs_via_meta_flag() -> None:
    body = {**SUCCESS, "meta": {**SUCCESS["meta"], "base64": "yes"}}  # type: ignore[dict-item]
    assert parse_modelslab(body).base64_files is True


def test_base64_outputs_via_dot_base64_urls() -> None:
    url = "https://modelslab-bom.s3.amazonaws.com/temp/3f2c-0.base64"
    result = parse_modelslab({"status": "success", "id": 1, "output": [url], "meta": {}})
    assert result.outputs == (url,)
    assert result.base64_files is True


def test_webhook_success_with_string_track_id_and_no_nsfw_or_proxy_links() -> None:
    result = parse_modelslab(WEBHOOK_SUCCESS)
    assert result.status is ResultStatus.SUCCESS
    assert result.track_id == "trk_abc"
    assert result.outputs == (f"{R2}/hook-0.png",)
    assert result.nsfw is None  # not documented for webhooks: unknown, not False
    assert (result.width, result.height) == (1024, 768)


def test_webhook_failure_with_numeric_track_id() -> None:
    result = parse_modelslab(WEBHOOK_FAILED)
    assert result.status is ResultStatus.FAILED
    assert result.track_id == "77"
    assert result.request_id == "81443064"
    assert result.error_message == "Out of memory"


def test_output_entries_that_are_not_urls_are_dropped() -> None:
    body = {**SUCCESS, "output": ["file:///etc/passwd", 7, None, f"{R2}/ok.png", "  "]}
    assert parse_modelslab(body).outputs == (f"{R2}/ok.png",)


def test_fetch_result_must_be_an_http_url() -> None:
    assert parse_modelslab({**PROCESSING, "fetch_result": "javascript:x"}).fetch_url is None


def test_secrets_never_reach_raw_or_messages() -> None:
    key = "ml-live-SECRET-123"
    body = {
        "status": "error",
        "message": f"Invalid API key {key}",
        "key": key,
        "meta": {
            "key": key,
            "api_key": key,
            "prompt": "hello",
            "webhook": "https://genvault.example/webhooks/modelslab/t1?token=abcdef",
            "note": f"echo {key}",
        },
    }
    result = parse_modelslab(body, secrets=[key])
    dumped = json.dumps(result.raw)
    assert key not in dumped
    assert "abcdef" not in dumped
    assert "key" not in result.raw and "api_key" not in result.raw["meta"]
    assert result.raw["meta"]["prompt"] == "hello"
    assert result.error_message is not None and key not in result.error_message


def test_scrub_keeps_track_id() -> None:
    assert scrub({"track_id": "t", "token": "x", "items": [{"secret": 1}]}) == {
        "track_id": "t",
        "items": [{}],
    }


# AI/ML API

AIML_DATA = {
    "data": [
        {
            "url": "https://cdn.aimlapi.com/generations/hedgehog/1749730923700-a.png",
            "b64_json": None,
        }
    ],
    "meta": {"usage": {"credits_used": 120000}},
}
AIML_IMAGES: dict[str, Any] = {
    "images": [
        {
            "url": "https://cdn.aimlapi.com/squirrel/files/rabbit/b.jpg",
            "content_type": "image/jpeg",
            "file_name": None,
            "file_size": None,
            "width": 1184,
            "height": 880,
        }
    ],
    "timings": {},
    "seed": 1415518620,
    "has_nsfw_concepts": [False],
    "prompt": "make it winter",
}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32


def test_aimlapi_data_shape() -> None:
    result = parse_aimlapi(AIML_DATA)
    assert result.status is ResultStatus.SUCCESS
    assert result.outputs == ("https://cdn.aimlapi.com/generations/hedgehog/1749730923700-a.png",)
    assert result.nsfw is None
    assert result.raw["meta"] == {"usage": {"credits_used": 120000}}


def test_aimlapi_images_shape() -> None:
    result = parse_aimlapi(AIML_IMAGES)
    assert result.status is ResultStatus.SUCCESS
    assert result.outputs == ("https://cdn.aimlapi.com/squirrel/files/rabbit/b.jpg",)
    assert (result.width, result.height) == (1184, 880)
    assert result.nsfw is False


def test_aimlapi_any_nsfw_concept_flags_the_result() -> None:
    body = {**AIML_IMAGES, "images": AIML_IMAGES["images"] * 2, "has_nsfw_concepts": [False, True]}
    assert parse_aimlapi(body).nsfw is True


@pytest.mark.parametrize(("image", "kind"), [(PNG, "png"), (JPEG, "jpeg"), (WEBP, "webp")])
def test_aimlapi_b64_json_becomes_a_data_uri_of_the_sniffed_type(image: bytes, kind: str) -> None:
    encoded = base64.b64encode(image).decode()
    result = parse_aimlapi({"data": [{"url": None, "b64_json": encoded}]})
    assert result.outputs == (f"data:image/{kind};base64,{encoded}",)
    # The manifest keeps the answer, not a second copy of the image.
    assert encoded not in json.dumps(result.raw)


def test_aimlapi_without_images_is_failed() -> None:
    result = parse_aimlapi({"data": []})
    assert result.status is ResultStatus.FAILED
    assert result.error_message == "AI/ML API answered without any image"


def test_image_data_uri_keeps_an_existing_prefix_and_defaults_to_png() -> None:
    assert image_data_uri("data:image/jpeg;base64,AAAA") == "data:image/jpeg;base64,AAAA"
    assert image_data_uri("!!!!") == "data:image/png;base64,!!!!"


def test_readable_message_shapes() -> None:
    assert readable_message(["a", {"b": ["c"]}]) == "a b: c"
    assert readable_message(None) is None
    assert readable_message("  spaced\n out  ") == "spaced out"
    assert len(readable_message("x" * 5000) or "") == 500


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        ({"retry_after": 30}, {}, 30.0),
        ({"retry_after": "12"}, {"Retry-After": "99"}, 12.0),
        ({}, {"Retry-After": "45"}, 45.0),
        ({}, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
        (None, {}, None),
    ],
)
def test_retry_after(body: Any, headers: dict[str, str], expected: float | None) -> None:
    assert retry_after(body, headers) == expected
