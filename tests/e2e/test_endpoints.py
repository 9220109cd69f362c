"""Every endpoint and every documented provider quirk, end to end through the sandbox.

Each job goes submit → sandbox → (webhook | poll) → download → verify → S3, and every archive
is read back and checked against its manifest (verify_archive).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests

from tests.support.archive_checks import (
    ImageOrigin,
    archived,
    assert_logs_clean,
    assert_no_secrets,
    callbacks,
    png_bytes,
    settle,
    verify_archive,
)
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

TEXT2IMG = "modelslab/text2img"
IMG2IMG = "modelslab/img2img"
ENTERPRISE = "modelslab-enterprise/flux_kontext_dev/img2img"
AIMLAPI = "aimlapi/images/generations"
KONTEXT_MAX = "flux/kontext-max/image-to-image"
KONTEXT_PRO = "flux/kontext-pro/image-to-image"


def failed(stack: Stack, job: dict[str, Any], timeout: float = 20) -> dict[str, Any]:
    done = settle(stack, job, timeout)
    assert done["status"] == "failed", done
    error = done["error"]
    assert set(error) == {"code", "message"}, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"].strip()
    # Readable: one line of prose, not a dumped provider body.
    assert "\n" not in error["message"] and not error["message"].startswith(("{", "["))
    assert done["assets"] == [] and done["manifest_key"] is None
    assert_no_secrets(json.dumps(done))
    return done


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def sizes(manifest: dict[str, Any]) -> list[tuple[int, int]]:
    return [(a["width"], a["height"]) for a in manifest["assets"]]


# -- the endpoints ----------------------------------------------------------------------------


def test_modelslab_text2img_with_documented_string_numbers(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()
    job = stack.submit(
        TEXT2IMG,
        {
            "model_id": "flux",
            "prompt": "e2e text2img: a red kite",
            "negative_prompt": "blurry",
            "width": "512",
            "height": "256",
            "samples": "2",
            "guidance_scale": "7.5",
            "num_inference_steps": "20",
            "safety_checker": "no",
            "seed": 11,
        },
    )
    done = archived(stack, job)
    manifest = verify_archive(stack, done)
    assert manifest["endpoint"] == TEXT2IMG
    assert sizes(manifest) == [(512, 256), (512, 256)]
    assert [a["content_type"] for a in manifest["assets"]] == ["image/png"] * 2
    assert manifest["assets"][0]["sha256"] != manifest["assets"][1]["sha256"]
    # Sent in the documented form: the numbers as numbers, the boolean as a boolean.
    assert manifest["request"]["params"]["width"] == 512
    assert manifest["request"]["params"]["safety_checker"] is False
    assert manifest["provider"]["response"]["meta"]["seed"] == 11
    assert manifest["inputs"] == []
    assert_logs_clean(stack)


def test_modelslab_img2img_archives_both_input_images(
    stack_factory: Callable[..., Stack], origin: ImageOrigin
) -> None:
    stack = stack_factory()
    first, second = png_bytes(64, 48, (200, 30, 30)), png_bytes(40, 40, (20, 30, 220))
    init_image = origin.serve("/refs/first.png", first)
    init_image_2 = origin.serve("/refs/second.png", second)
    job = stack.submit(
        IMG2IMG,
        {
            "model_id": "flux-kontext-dev",
            "prompt": "e2e img2img: merge the two",
            "init_image": init_image,
            "init_image_2": init_image_2,
            "strength": "0.5",
            "guidance": "2.5",
            "num_inference_steps": "28",
            "width": 512,
            "height": 512,
        },
    )
    done = archived(stack, job)
    manifest = verify_archive(stack, done)
    assert sizes(manifest) == [(512, 512)]
    inputs = manifest["inputs"]
    assert [i["index"] for i in inputs] == [0, 1]
    assert [i["sha256"] for i in inputs] == [sha256(first), sha256(second)]
    assert [(i["width"], i["height"]) for i in inputs] == [(64, 48), (40, 40)]
    assert [i["source_url"] for i in inputs] == [init_image, init_image_2]
    assert [i["key"].rsplit("/", 2)[-2:] for i in inputs] == [
        ["inputs", "0.png"],
        ["inputs", "1.png"],
    ]
    assert all(i["key"].startswith(done["manifest_key"].rsplit("/", 1)[0]) for i in inputs)
    # The provider was handed the URLs themselves.
    meta = manifest["provider"]["response"]["meta"]
    assert (meta["init_image"], meta["init_image_2"]) == (init_image, init_image_2)
    assert origin.hits == {"/refs/first.png": 1, "/refs/second.png": 1}
    assert_logs_clean(stack)


def test_a_data_uri_input_is_stored_and_the_provider_gets_a_url(
    stack_factory: Callable[..., Stack], origin: ImageOrigin
) -> None:
    stack = stack_factory()
    inline, linked = png_bytes(24, 16, (10, 160, 10)), png_bytes(16, 24, (160, 10, 160))
    linked_url = origin.serve("/refs/linked.png", linked)
    job = stack.submit(
        IMG2IMG,
        {
            "model_id": "flux-kontext-dev",
            "prompt": "e2e img2img: from an inline image",
            "init_image": data_uri(inline),
            "init_image_2": linked_url,
        },
    )
    done = archived(stack, job)
    manifest = verify_archive(stack, done)
    inputs = manifest["inputs"]
    assert [i["sha256"] for i in inputs] == [sha256(inline), sha256(linked)]
    assert inputs[0]["key"].endswith("/inputs/0.png")
    assert inputs[0]["source_url"].startswith("data:image/png;base64,")
    assert len(inputs[0]["source_url"]) < 150  # summarised, not copied
    assert sha256(inline) in inputs[0]["source_url"]
    # The request params keep a summary pointing at the archived input, not the image.
    assert manifest["request"]["params"]["init_image"]["archived_as"] == inputs[0]["key"]
    # What the sandbox received (and echoed in its meta) is an http URL of the stored input.
    sent = manifest["provider"]["response"]["meta"]["init_image"]
    parts = urlsplit(sent)
    assert parts.scheme == "http"
    assert f"{parts.scheme}://{parts.netloc}" == stack.env["AWS_ENDPOINT_URL_S3"]
    # The URL's path is the key percent-encoded (an OCFL object's directory holds '%').
    assert unquote(parts.path) == f"/{stack.bucket}/{stack.prefix}/{inputs[0]['key']}"
    assert manifest["provider"]["response"]["meta"]["init_image_2"] == linked_url
    assert_logs_clean(stack)


def test_enterprise_kontext_with_instant_response(
    stack_factory: Callable[..., Stack], origin: ImageOrigin
) -> None:
    stack = stack_factory()
    reference = png_bytes(32, 32, (250, 200, 0))
    job = stack.submit(
        ENTERPRISE,
        {
            "prompt": "e2e enterprise kontext",
            "init_image": origin.serve("/refs/enterprise.png", reference),
            "instant_response": "yes",
            "samples": 2,
            "width": 256,
            "height": 384,
        },
    )
    done = archived(stack, job)
    manifest = verify_archive(stack, done)
    assert sizes(manifest) == [(256, 384)] * 2
    assert [i["sha256"] for i in manifest["inputs"]] == [sha256(reference)]
    # instant_response: queued at once, the result came later by webhook.
    sources = callbacks(stack, done["id"])
    assert sources[0] == ("submit", "processing")
    assert ("webhook", "success") in sources
    assert manifest["provider"]["response_source"] == "webhook"
    assert manifest["request"]["params"]["instant_response"] is True
    assert_logs_clean(stack)


def test_aimlapi_kontext_max_and_pro_in_both_response_shapes(
    stack_factory: Callable[..., Stack], origin: ImageOrigin
) -> None:
    stack = stack_factory()
    refs = [png_bytes(20 + i, 20, (40 * i, 90, 90)) for i in range(3)]
    urls = [origin.serve(f"/refs/aiml-{i}.png", data) for i, data in enumerate(refs)]
    max_data = stack.submit(
        AIMLAPI,
        {
            "model": KONTEXT_MAX,
            "prompt": "e2e kontext max, data shape",
            "image_url": urls[0],
            "output_format": "png",
            "aspect_ratio": "1:1",
            "safety_tolerance": "2",
        },
    )
    pro_images = stack.submit(
        AIMLAPI,
        {
            "model": KONTEXT_PRO,
            "prompt": "e2e kontext pro [sandbox:images-shape]",
            "image_url": urls[1:],
            "num_images": 2,
            "seed": 5,
        },
    )
    max_images = stack.submit(
        AIMLAPI,
        {
            "model": KONTEXT_MAX,
            "prompt": "e2e kontext max [sandbox:images-shape]",
            "image_url": [urls[2]],
            "aspect_ratio": "9:16",
        },
    )

    done = archived(stack, max_data)
    manifest = verify_archive(stack, done)
    assert sizes(manifest) == [(1024, 1024)]
    assert manifest["assets"][0]["content_type"] == "image/png"
    assert "data" in manifest["provider"]["response"]
    assert manifest["provider"]["response_source"] == "submit"
    assert [i["sha256"] for i in manifest["inputs"]] == [sha256(refs[0])]

    done = archived(stack, pro_images)
    manifest = verify_archive(stack, done)
    assert sizes(manifest) == [(1184, 880)] * 2  # the documented default, 16:9
    assert {a["content_type"] for a in manifest["assets"]} == {"image/jpeg"}
    assert "images" in manifest["provider"]["response"]
    assert [i["sha256"] for i in manifest["inputs"]] == [sha256(r) for r in refs[1:]]

    done = archived(stack, max_images)
    manifest = verify_archive(stack, done)
    assert sizes(manifest) == [(752, 1392)]
    assert [i["source_url"] for i in manifest["inputs"]] == [urls[2]]
    assert_logs_clean(stack)


def test_aimlapi_inline_images_in_both_response_shapes(
    stack_factory: Callable[..., Stack], origin: ImageOrigin
) -> None:
    stack = stack_factory()
    url = origin.serve("/refs/inline.png", png_bytes(30, 30, (0, 0, 0)))
    b64_json = stack.submit(
        AIMLAPI,
        {
            "model": KONTEXT_PRO,
            "prompt": "e2e b64_json [sandbox:b64]",
            "image_url": url,
            "output_format": "png",
            "num_images": 2,
        },
    )
    data_url = stack.submit(
        AIMLAPI,
        {
            "model": KONTEXT_MAX,
            "prompt": "e2e data: url [sandbox:images-shape,b64]",
            "image_url": url,
            "aspect_ratio": "4:3",
        },
    )
    for job, content_type, count in ((b64_json, "image/png", 2), (data_url, "image/jpeg", 1)):
        done = archived(stack, job)
        manifest = verify_archive(stack, done)
        assert len(manifest["assets"]) == count
        for entry in manifest["assets"]:
            assert entry["content_type"] == content_type
            assert entry["source_url"].startswith(f"data:{content_type};base64,")
        # The manifest keeps the provider's answer, not a second copy of every image.
        assert len(json.dumps(manifest["provider"]["response"])) < 4_000
        assert len(manifest["inputs"]) == 1
    assert_logs_clean(stack)


# -- quirks of the provider bodies --------------------------------------------------------------


def test_base64_outputs_are_decoded_and_archived_as_images(
    stack_factory: Callable[..., Stack], origin: ImageOrigin
) -> None:
    stack = stack_factory()
    text2img = stack.submit(
        TEXT2IMG,
        {"model_id": "flux", "prompt": "e2e base64 text2img", "base64": True, "samples": 2},
    )
    img2img = stack.submit(
        IMG2IMG,
        {
            "model_id": "flux-kontext-dev",
            "prompt": "e2e base64 img2img [sandbox:processing,eta=0.3]",
            "init_image": origin.serve("/refs/b64.png", png_bytes(8, 8, (1, 2, 3))),
            "base64": "yes",
            "width": 320,
            "height": 320,
        },
    )
    for job, size, count in ((text2img, (512, 512), 2), (img2img, (320, 320), 1)):
        done = archived(stack, job)
        manifest = verify_archive(stack, done)  # opens every object with Pillow
        assert sizes(manifest) == [size] * count
        for asset in done["assets"]:
            assert asset["content_type"] == "image/png"
            body = requests.get(asset["url"], timeout=10).content
            assert body.startswith(b"\x89PNG\r\n\x1a\n"), body[:40]
        for entry in manifest["assets"]:
            assert entry["source_url"].endswith(".base64")
            # The text file was what the provider served.
            text = requests.get(entry["source_url"], timeout=10).text
            assert text.startswith("data:image/png;base64,")
            assert (
                hashlib.sha256(base64.b64decode(text.split(",", 1)[1])).hexdigest()
                == (entry["sha256"])
            )
    assert_logs_clean(stack)


def test_response_body_quirks_are_archived(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory()

    def text2img(prompt: str) -> dict[str, Any]:
        return stack.submit(TEXT2IMG, {"model_id": "flux", "prompt": prompt, "width": 256})

    # No webhook: the submit answer (the body with proxy_links) must be the one archived. With
    # a webhook too, whichever success commits first is the job's result, and on a loaded
    # machine that can be the webhook's body, which has no proxy_links.
    proxy_object = text2img("e2e quirk [sandbox:proxy-object,webhook-never]")
    id_string = text2img("e2e quirk [sandbox:id-string]")
    empty_output = text2img("e2e quirk [sandbox:processing,output-empty-string,eta=0.3]")
    id_null = stack.submit(ENTERPRISE, {"prompt": "e2e quirk [sandbox:id-null]", "width": 256})

    done = archived(stack, proxy_object)
    response = verify_archive(stack, done)["provider"]["response"]
    assert isinstance(response["proxy_links"], dict)
    assert list(response["proxy_links"].values()) == response["output"]

    done = archived(stack, id_string)
    response = verify_archive(stack, done)["provider"]["response"]
    assert isinstance(response["id"], str) and response["id"] == done["provider_request_id"]

    done = archived(stack, empty_output)
    verify_archive(stack, done)
    sources = callbacks(stack, done["id"])
    assert sources[0] == ("submit", "processing") and sources[-1][1] == "success"

    done = archived(stack, id_null)
    manifest = verify_archive(stack, done)
    assert done["provider_request_id"] is None
    assert manifest["provider"]["response"]["id"] is None
    assert sizes(manifest) == [(256, 512)]
    assert_logs_clean(stack)


def test_a_rate_limited_submit_is_retried_after_retry_after(
    stack_factory: Callable[..., Stack], origin: ImageOrigin
) -> None:
    stack = stack_factory()
    started = time.monotonic()
    modelslab = stack.submit(
        TEXT2IMG, {"model_id": "flux", "prompt": "e2e ml [sandbox:ratelimit=1,retry-after=1]"}
    )
    aimlapi = stack.submit(
        AIMLAPI,
        {
            "model": KONTEXT_PRO,
            # The sandbox counts attempts per prompt: this one is its own.
            "prompt": "e2e aiml [sandbox:ratelimit=1,retry-after=1]",
            "image_url": origin.serve("/refs/rl.png", png_bytes(8, 8, (9, 9, 9))),
        },
    )
    for job in (modelslab, aimlapi):
        verify_archive(stack, archived(stack, job))
    assert time.monotonic() - started >= 1.0  # retry_after was honoured, not hammered
    retries = [
        line
        for line in (stack.logs / "worker0.log").read_text().splitlines()
        if "task will retry" in line
    ]
    for job, words in ((modelslab, "ModelsLab rate limit"), (aimlapi, "AI/ML API rate limit")):
        mine = [json.loads(line) for line in retries if job["id"] in line]
        assert len(mine) == 1, retries
        assert words in mine[0]["msg"] and "retry in 1.0s" in mine[0]["msg"]
    assert_logs_clean(stack)


def test_provider_errors_and_failures_reach_the_job_readably(
    stack_factory: Callable[..., Stack], origin: ImageOrigin
) -> None:
    # Few attempts, so a provider that keeps answering 500 gives up quickly.
    stack = stack_factory(GENVAULT_TASK_MAX_ATTEMPTS="2")
    error = stack.submit(TEXT2IMG, {"model_id": "flux", "prompt": "e2e [sandbox:error]"})
    fail = stack.submit(TEXT2IMG, {"model_id": "flux", "prompt": "e2e [sandbox:fail,eta=0.3]"})
    fail_messege = stack.submit(
        ENTERPRISE, {"prompt": "e2e [sandbox:fail,messege,eta=0.3]", "width": 256}
    )
    aiml_error = stack.submit(
        AIMLAPI,
        {
            "model": KONTEXT_MAX,
            "prompt": "e2e [sandbox:error]",
            "image_url": origin.serve("/refs/err.png", png_bytes(8, 8, (0, 0, 9))),
        },
    )

    done = failed(stack, error)
    assert done["error"]["code"] == "provider_error"
    assert done["error"]["message"] == "Something went wrong, please try again. ([sandbox:error])"

    for job in (fail, fail_messege):
        done = failed(stack, job)
        assert done["error"] == {"code": "provider_error", "message": "Failed, Try Again"}
        # Queued first; the failure came later (by webhook, or by a poll that beat it).
        sources = callbacks(stack, done["id"])
        assert sources[0] == ("submit", "processing")
        assert sources[1][1] == "failed"

    done = failed(stack, aiml_error)
    assert "AI/ML API answered HTTP 500" in done["error"]["message"]
    assert "Internal server error" in done["error"]["message"]
    assert_logs_clean(stack)


def test_a_bad_key_fails_naming_the_setting_and_not_the_key(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory(MODELSLAB_API_KEY="bad-key")
    job = stack.submit(TEXT2IMG, {"model_id": "flux", "prompt": "e2e bad key"})
    # The enterprise endpoint has a key of its own, which is good.
    enterprise = stack.submit(ENTERPRISE, {"prompt": "e2e own key", "width": 256})

    done = failed(stack, job)
    assert done["error"]["code"] == "provider_auth"
    assert "MODELSLAB_API_KEY" in done["error"]["message"]
    assert "bad-key" not in json.dumps(done)
    assert done["provider_request_id"] is None
    verify_archive(stack, archived(stack, enterprise))

    # It never reached the provider, so a retry re-submits it; with the key unchanged it
    # fails the same way again.
    r = requests.post(f"{stack.web_url}/v1/jobs/{job['id']}/retry", headers=stack.auth, timeout=10)
    assert r.status_code == 202, r.text
    again = stack.wait(
        job["id"], lambda j: j["status"] == "failed" and j["updated_at"] > done["updated_at"]
    )
    assert again["error"] == done["error"]
    logs = stack.tail_logs(100_000)
    assert "bad-key" not in logs
    assert_logs_clean(stack)
