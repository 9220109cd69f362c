"""Job params: documented limits, the providers' string forms, refused fields, 422 entries."""

from __future__ import annotations

from typing import Any

import pytest

from service.errors import FieldError, InvalidRequest
from service.providers.endpoints import (
    ENDPOINTS,
    expected_count,
    expected_size,
    get_endpoint,
    validate_params,
)

TEXT2IMG = "modelslab/text2img"
IMG2IMG = "modelslab/img2img"
ENTERPRISE = "modelslab-enterprise/flux_kontext_dev/img2img"
AIMLAPI = "aimlapi/images/generations"

PNG_DATA_URI = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABpfZFQAAAAABJRU5ErkJggg=="
)

MINIMAL: dict[str, dict[str, Any]] = {
    TEXT2IMG: {"model_id": "juggernaut-xl-v5", "prompt": "a lighthouse at dusk"},
    IMG2IMG: {"prompt": "make it winter", "init_image": "https://example.com/in.png"},
    ENTERPRISE: {"prompt": "make it winter"},
    AIMLAPI: {
        "model": "flux/kontext-pro/image-to-image",
        "prompt": "make it winter",
        "image_url": "https://example.com/in.png",
    },
}


def errors_of(endpoint: str, params: dict[str, Any]) -> list[FieldError]:
    with pytest.raises(InvalidRequest) as caught:
        validate_params(endpoint, params)
    return caught.value.errors


def only_error(endpoint: str, **changes: Any) -> FieldError:
    errors = errors_of(endpoint, {**MINIMAL[endpoint], **changes})
    assert len(errors) == 1, errors
    return errors[0]


def test_registry_holds_exactly_the_four_documented_endpoints() -> None:
    assert set(ENDPOINTS) == {TEXT2IMG, IMG2IMG, ENTERPRISE, AIMLAPI}
    enterprise = get_endpoint(ENTERPRISE)
    assert enterprise.key_setting == "modelslab_enterprise_api_key"
    assert enterprise.fetch_path_template == "/v1/enterprise/flux_kontext_dev/fetch/{id}"
    assert enterprise.input_fields == ("init_image", "init_image_2")
    assert get_endpoint(IMG2IMG).path == "/v6/images/img2img"
    assert get_endpoint(TEXT2IMG).fetch_path_template == "/v6/images/fetch/{id}"
    aiml = get_endpoint(AIMLAPI)
    assert (aiml.provider, aiml.uses_webhook, aiml.fetch_path_template) == ("aimlapi", False, None)
    assert aiml.input_fields == ("image_url",)


def test_unknown_endpoint_names_the_valid_ones() -> None:
    with pytest.raises(InvalidRequest) as caught:
        get_endpoint("modelslab/text2video")
    [error] = caught.value.errors
    assert error.field == "endpoint"
    assert all(name in error.message for name in ENDPOINTS)


def test_text2img_string_forms_from_the_docs_example_are_sent_typed() -> None:
    # The body of ModelsLab's own text2img example, minus the key.
    params = {
        "model_id": "realisticvisionv60b1v60b1",
        "prompt": "ultra realistic close up portrait",
        "negative_prompt": "painting, extra fingers",
        "width": "512",
        "height": "512",
        "samples": "1",
        "num_inference_steps": "30",
        "safety_checker": "no",
        "enhance_prompt": "yes",
        "seed": None,
        "guidance_scale": 7.5,
        "multi_lingual": "no",
        "panorama": "no",
        "self_attention": "no",
        "upscale": "no",
        "embeddings": "embeddings_model_id",
        "lora_model": "more_details,animie",
        "lora_strength": "0.6, 0.7",
        "clip_skip": "2",
        "safety_checker_type": "blur",
    }
    wire = validate_params(TEXT2IMG, params)
    assert wire["width"] == 512 and wire["height"] == 512 and wire["samples"] == 1
    assert wire["num_inference_steps"] == 30 and wire["clip_skip"] == 2
    assert wire["safety_checker"] is False and wire["enhance_prompt"] is True
    assert wire["upscale"] is False and wire["multi_lingual"] is False
    assert wire["guidance_scale"] == 7.5
    assert wire["lora_strength"] == "0.6, 0.7"
    assert wire["embeddings"] == "embeddings_model_id"  # documented elsewhere: passes through
    assert "seed" not in wire  # null and absent both mean "random"


def test_kontext_docs_example_is_normalised_and_keeps_its_model_id() -> None:
    params = {
        "init_image": "https://example.com/a.png",
        "init_image_2": PNG_DATA_URI,
        "prompt": "merge the two",
        "model_id": "flux-kontext-dev",
        "num_inference_steps": "28",
        "strength": "0.5",
        "scheduler": "DPMSolverMultistepScheduler",
        "guidance": "2.5",
        "enhance_prompt": None,
        "base64": False,
    }
    wire = validate_params(IMG2IMG, params)
    assert wire == {
        "init_image": "https://example.com/a.png",
        "init_image_2": PNG_DATA_URI,
        "prompt": "merge the two",
        "model_id": "flux-kontext-dev",
        "num_inference_steps": 28,
        "strength": 0.5,
        "guidance": 2.5,
        "base64": False,
        "scheduler": "DPMSolverMultistepScheduler",
    }


def test_img2img_model_id_defaults_to_kontext_and_cannot_be_changed() -> None:
    assert validate_params(IMG2IMG, MINIMAL[IMG2IMG])["model_id"] == "flux-kontext-dev"
    error = only_error(IMG2IMG, model_id="sdxl")
    assert error.field == "params.model_id"
    assert "flux-kontext-dev" in error.message


def test_aimlapi_forms() -> None:
    wire = validate_params(
        AIMLAPI,
        {
            **MINIMAL[AIMLAPI],
            "image_url": ["https://example.com/a.png", PNG_DATA_URI],
            "safety_tolerance": 3,
            "num_images": "2",
            "seed": "7",
            "output_format": "png",
            "aspect_ratio": "1:1",
        },
    )
    assert wire["safety_tolerance"] == "3"  # documented as a string
    assert wire["num_images"] == 2 and wire["seed"] == 7
    assert wire["image_url"] == ["https://example.com/a.png", PNG_DATA_URI]
    assert validate_params(AIMLAPI, MINIMAL[AIMLAPI])["image_url"] == "https://example.com/in.png"


@pytest.mark.parametrize(
    ("endpoint", "field", "value", "message"),
    [
        (TEXT2IMG, "width", 1025, "must be at most 1024"),
        (TEXT2IMG, "height", "2048", "must be at most 1024"),
        (TEXT2IMG, "width", 0, "must be greater than 0"),
        (TEXT2IMG, "samples", 5, "must be between 1 and 4"),
        (TEXT2IMG, "samples", "0", "must be between 1 and 4"),
        (TEXT2IMG, "samples", "two", "must be an integer between 1 and 4"),
        (TEXT2IMG, "samples", 1.5, "must be a whole number between 1 and 4"),
        (TEXT2IMG, "width", True, "must be a number, not true/false"),
        (TEXT2IMG, "guidance_scale", 0.5, "must be between 1 and 20"),
        (TEXT2IMG, "guidance_scale", "nan", "must be a finite number"),
        (TEXT2IMG, "clip_skip", 9, "must be between 1 and 8"),
        (TEXT2IMG, "num_inference_steps", 51, "must be between 1 and 50"),
        (TEXT2IMG, "safety_checker", "maybe", 'must be true or false ("yes"/"no" also accepted)'),
        (
            TEXT2IMG,
            "safety_checker_type",
            "sepia",
            "must be one of 'blur', 'sensitive_content_text', 'pixelate', 'black'",
        ),
        (TEXT2IMG, "prompt", "x" * 10_001, "must be at most 10000 characters"),
        (TEXT2IMG, "prompt", "   ", "must not be empty"),
        (TEXT2IMG, "prompt", 42, "must be a string"),
        (TEXT2IMG, "ip_adapter_image", "file:///etc/passwd", "must be an http(s) URL"),
        (TEXT2IMG, "ip_adapter_scale", 2, "must be between 0 and 1"),
        (TEXT2IMG, "lora_strength", "strong", "must be a number or comma-separated numbers"),
        (TEXT2IMG, "vae", {"nested": 1}, "must be a string"),
        (TEXT2IMG, "panorama_mode", {"nested": 1}, "must be a string, number, boolean or null"),
        (IMG2IMG, "num_inference_steps", "51", "must be between 1 and 50"),
        (IMG2IMG, "strength", "1.5", "must be between 0 and 1"),
        (IMG2IMG, "strength", -0.1, "must be between 0 and 1"),
        (IMG2IMG, "guidance", 21, "must be between 0 and 20"),
        (IMG2IMG, "samples", 5, "must be between 1 and 4"),
        (IMG2IMG, "init_image", "ftp://example.com/a.png", "must be an http(s) URL"),
        (IMG2IMG, "init_image", "https://exa mple.com/a.png", "must be an http(s) URL"),
        (IMG2IMG, "init_image", "data:text/plain;base64,AAAA", "data:image/...;base64,"),
        (IMG2IMG, "init_image_2", "data:image/png;base64,@@not-base64@@", "invalid base64"),
        (ENTERPRISE, "width", 4096, "must be at most 1024"),
        (ENTERPRISE, "strength", 3, "must be between 0 and 1"),
        (ENTERPRISE, "init_image", "javascript:alert(1)", "must be an http(s) URL"),
        (AIMLAPI, "model", "flux/dev", "must be one of 'flux/kontext-max/image-to-image'"),
        (AIMLAPI, "prompt", "x" * 4001, "must be at most 4000 characters"),
        (AIMLAPI, "num_images", 5, "must be between 1 and 4"),
        (AIMLAPI, "seed", 0, "must be at least 1"),
        (AIMLAPI, "guidance_scale", 25, "must be between 1 and 20"),
        (AIMLAPI, "safety_tolerance", "7", 'must be one of "1" to "6"'),
        (AIMLAPI, "output_format", "gif", "must be one of 'jpeg', 'png'"),
        (AIMLAPI, "aspect_ratio", "5:4", "must be one of '21:9', '16:9'"),
        (AIMLAPI, "image_url", ["https://example.com/a.png"] * 5, "a list of 1 to 4 URLs"),
        (AIMLAPI, "image_url", [], "a list of 1 to 4 URLs"),
        (AIMLAPI, "image_url", "ftp://example.com/a.png", "must be an http(s) URL"),
        (AIMLAPI, "steps", 30, "is not a documented field of this endpoint"),
    ],
)
def test_limits_name_the_field_and_the_limit(
    endpoint: str, field: str, value: Any, message: str
) -> None:
    error = only_error(endpoint, **{field: value})
    assert error.field == f"params.{field}"
    assert message in error.message


def test_valid_boundaries_are_accepted() -> None:
    wire = validate_params(
        TEXT2IMG, {**MINIMAL[TEXT2IMG], "width": 1024, "height": 1, "samples": 4, "clip_skip": 8}
    )
    assert (wire["width"], wire["height"], wire["samples"], wire["clip_skip"]) == (1024, 1, 4, 8)
    wire = validate_params(IMG2IMG, {**MINIMAL[IMG2IMG], "strength": 0, "guidance": "20"})
    assert (wire["strength"], wire["guidance"]) == (0.0, 20.0)


@pytest.mark.parametrize("endpoint", [TEXT2IMG, IMG2IMG, ENTERPRISE, AIMLAPI])
def test_service_owned_fields_are_refused(endpoint: str) -> None:
    params = {**MINIMAL[endpoint], "key": "sk-123", "webhook": "https://evil.test/", "track_id": 9}
    errors = errors_of(endpoint, params)
    assert {e.field for e in errors} == {"params.key", "params.webhook", "params.track_id"}
    assert all("set by the service" in e.message for e in errors)
    assert all("sk-123" not in e.message for e in errors)


def test_every_violation_gets_its_own_entry() -> None:
    errors = errors_of(
        TEXT2IMG,
        {"prompt": "", "width": 2000, "samples": 9, "strength": {"x": 1}, "key": "k"},
    )
    assert {e.field: e.message for e in errors} == {
        "params.key": "is set by the service; remove it from params",
        "params.model_id": "is required",
        "params.prompt": "must not be empty",
        "params.width": "must be at most 1024",
        "params.samples": "must be between 1 and 4",
        "params.strength": "must be a string, number, boolean or null",
    }


def test_required_fields_are_named() -> None:
    assert {e.field for e in errors_of(IMG2IMG, {})} == {"params.prompt", "params.init_image"}
    assert {e.field for e in errors_of(AIMLAPI, {})} == {
        "params.model",
        "params.prompt",
        "params.image_url",
    }


def test_field_names_must_look_like_field_names() -> None:
    errors = errors_of(TEXT2IMG, {**MINIMAL[TEXT2IMG], "bad name": 1})
    assert errors == [FieldError("params.bad name", "is not a valid field name")]


def test_params_must_be_an_object() -> None:
    errors = errors_of(TEXT2IMG, ["not", "a", "mapping"])  # type: ignore[arg-type]
    assert errors == [FieldError("params", "must be an object")]


@pytest.mark.parametrize(
    ("endpoint", "changes", "size"),
    [
        (TEXT2IMG, {"width": "512", "height": 768}, (512, 768)),
        (TEXT2IMG, {"width": 500, "height": 512}, None),  # the provider may round 500
        (TEXT2IMG, {"width": 512}, None),
        (TEXT2IMG, {"width": 512, "height": 512, "upscale": "yes"}, None),
        (TEXT2IMG, {}, None),
        (IMG2IMG, {"width": 1024, "height": 768}, (1024, 768)),
        (IMG2IMG, {"width": 1000, "height": 768}, None),
        (ENTERPRISE, {"width": 768, "height": 1024}, (768, 1024)),
        (AIMLAPI, {"aspect_ratio": "16:9"}, None),
    ],
)
def test_expected_size(endpoint: str, changes: dict[str, Any], size: tuple[int, int]) -> None:
    assert expected_size(endpoint, {**MINIMAL[endpoint], **changes}) == size


def test_expected_count() -> None:
    assert expected_count(TEXT2IMG, MINIMAL[TEXT2IMG]) == 1
    assert expected_count(TEXT2IMG, {**MINIMAL[TEXT2IMG], "samples": "3"}) == 3
    assert expected_count(IMG2IMG, {**MINIMAL[IMG2IMG], "samples": 4}) == 4
    assert expected_count(AIMLAPI, {**MINIMAL[AIMLAPI], "num_images": 2}) == 2


def test_expected_size_and_count_of_params_that_no_longer_validate() -> None:
    stale = {**MINIMAL[TEXT2IMG], "width": 2048, "height": 512, "samples": 9}
    assert expected_size(TEXT2IMG, stale) is None
    assert expected_count(TEXT2IMG, stale) == 1
