"""The request parameters of each endpoint, with the limits PROVIDERS.md documents.

Input is what the providers' own examples send: numbers and booleans may arrive as strings
(``"28"``, ``"0.5"``, ``"512"``, ``"yes"``/``"no"``, ``"true"``). ``model_dump(mode="json",
exclude_none=True)`` gives the wire form. For ModelsLab that is the types of its OpenAPI
schemas: integers and numbers as JSON numbers and toggles as JSON booleans (the older pages'
``"yes"``/``"no"`` strings are accepted on the way in, but the current schemas type these
fields ``boolean``). For AI/ML API ``safety_tolerance`` is sent as the string it documents.
Fields left out, or set to null, are not sent, so the provider applies its own defaults
(for ``seed``, null and absent both mean "random").
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

KONTEXT_DEV: Final = "flux-kontext-dev"
AIMLAPI_MODELS = ("flux/kontext-max/image-to-image", "flux/kontext-pro/image-to-image")

# ModelsLab documents no prompt limit and its models read a few hundred tokens at most:
# 10 000 characters refuses only what is surely a mistake and keeps job rows small.
MODELSLAB_PROMPT_MAX = 10_000
AIMLAPI_PROMPT_MAX = 4_000
URL_MAX = 2_048
SHORT_TEXT_MAX = 500


def _not_bool(value: Any) -> Any:
    # bool is an int subclass: `"width": true` is a mistake, not 1.
    if isinstance(value, bool):
        raise PydanticCustomError("number_type", "must be a number, not true/false")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be empty")
    return value


def _image_ref(value: str) -> str:
    """An http(s) URL, or a ``data:image/...;base64,`` URI holding valid base64."""
    if value.startswith("data:"):
        header, sep, payload = value.partition(",")
        if not sep or not re.fullmatch(r"data:image/[a-z0-9.+-]+;base64", header, re.I):
            raise PydanticCustomError("image_ref", "must be a data:image/...;base64, URI")
        try:
            base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise PydanticCustomError("image_ref", "holds invalid base64 data") from None
        return value
    if len(value) > URL_MAX:
        raise PydanticCustomError("image_ref", f"must be at most {URL_MAX} characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or re.search(r"\s", value):
        raise PydanticCustomError(
            "image_ref", "must be an http(s) URL or a data:image/...;base64, URI"
        )
    return value


def _image_refs(value: Any) -> str | list[str]:
    """AI/ML API's ``image_url``: one reference, or a list of 1 to 4."""
    if isinstance(value, str):
        return _image_ref(value)
    if isinstance(value, list) and 1 <= len(value) <= 4 and all(isinstance(v, str) for v in value):
        return [_image_ref(v) for v in value]
    raise PydanticCustomError("image_refs", "must be one URL or a list of 1 to 4 URLs")


def _json_scalar(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MODELSLAB_PROMPT_MAX:
        raise PydanticCustomError("scalar", f"must be at most {MODELSLAB_PROMPT_MAX} characters")
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("scalar", "must be a finite number")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise PydanticCustomError("scalar", "must be a string, number, boolean or null")


def _lora_strength(value: Any) -> str:
    # Documented as a string: one number, or comma-separated numbers for several LoRAs.
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?(\s*,\s*\d+(\.\d+)?)*\s*", value):
        return value.strip()
    raise PydanticCustomError("lora_strength", "must be a number or comma-separated numbers")


def _safety_tolerance(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and value.strip() in {"1", "2", "3", "4", "5", "6"}:
        return value.strip()
    raise PydanticCustomError("safety_tolerance", 'must be one of "1" to "6"')


Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]
ImageRef = Annotated[str, AfterValidator(_image_ref)]
ImageRefs = Annotated[
    str | list[str], PlainValidator(_image_refs, json_schema_input_type=str | list[str])
]
JsonScalar = Annotated[
    str | int | float | bool | None,
    PlainValidator(_json_scalar, json_schema_input_type=str | int | float | bool | None),
]
ShortText = Annotated[str, StringConstraints(max_length=SHORT_TEXT_MAX)]
ModelsLabPrompt = Annotated[
    str, StringConstraints(max_length=MODELSLAB_PROMPT_MAX), AfterValidator(_not_blank)
]
ModelsLabText = Annotated[str, StringConstraints(max_length=MODELSLAB_PROMPT_MAX)]
LoraStrength = Annotated[str, PlainValidator(_lora_strength, json_schema_input_type=str | float)]
SafetyTolerance = Annotated[
    str, PlainValidator(_safety_tolerance, json_schema_input_type=str | int)
]
SafetyCheckerType = Literal["blur", "sensitive_content_text", "pixelate", "black"]
AspectRatio = Literal["21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21"]


class _Params(BaseModel):
    model_config = ConfigDict(
        allow_inf_nan=False,
        # `model_id` is ModelsLab's field name; pydantic reserves `model_` by default.
        protected_namespaces=(),
        frozen=True,
    )


class _ModelsLabParams(_Params):
    """Fields every ModelsLab image endpoint documents.

    Unknown fields pass through (``extra="allow"``), each a JSON scalar: the field set of
    ModelsLab varies by model family and its own examples carry fields the parameter tables
    omit (``scheduler`` in the Kontext example), so refusing them would refuse requests
    pasted from its docs. Nested objects are refused: no documented field takes one.
    """

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, JsonScalar] = Field(init=False)

    prompt: ModelsLabPrompt
    negative_prompt: ModelsLabText | None = None
    # The OpenAPI schemas set only a maximum of 1024; one older page adds "at least 256 and
    # divisible by 8". The provider accepts (and rounds) other sizes, so only > 1024 and
    # non-positive sizes are refused; expected_size() trusts only sizes it will not round.
    width: Int | None = Field(None, gt=0, le=1024)
    height: Int | None = Field(None, gt=0, le=1024)
    samples: Int | None = Field(None, ge=1, le=4)
    seed: Int | None = None
    safety_checker: bool | None = None
    base64: bool | None = None
    temp: bool | None = None


class ModelsLabText2ImgParams(_ModelsLabParams):
    """``POST /v6/images/text2img``."""

    model_id: Annotated[str, StringConstraints(min_length=1, max_length=SHORT_TEXT_MAX)]
    # The tables say 1-50 on some pages and "capped at 20" on others: the provider caps.
    num_inference_steps: Int | None = Field(None, ge=1, le=50)
    guidance_scale: Float | None = Field(None, ge=1, le=20)
    safety_checker_type: SafetyCheckerType | None = None
    enhance_prompt: bool | None = None
    enhance_style: ShortText | None = None
    clip_skip: Int | None = Field(None, ge=1, le=8)
    scheduler: ShortText | None = None
    use_karras_sigmas: bool | None = None
    algorithm_type: ShortText | None = None
    vae: ShortText | None = None
    lora_model: ShortText | None = None
    lora_strength: LoraStrength | None = None
    multi_lingual: bool | None = None
    panorama: bool | None = None
    self_attention: bool | None = None
    tomesd: bool | None = None
    upscale: bool | None = None
    highres_fix: bool | None = None
    ip_adapter_id: ShortText | None = None
    ip_adapter_scale: Float | None = Field(None, ge=0, le=1)
    ip_adapter_image: ImageRef | None = None


class ModelsLabKontextParams(_ModelsLabParams):
    """``POST /v6/images/img2img`` with ``model_id: "flux-kontext-dev"``."""

    model_id: Literal["flux-kontext-dev"] = KONTEXT_DEV
    init_image: ImageRef
    init_image_2: ImageRef | None = None
    num_inference_steps: Int | None = Field(None, ge=1, le=50)
    strength: Float | None = Field(None, ge=0, le=1)
    # Kontext's field is `guidance`, not `guidance_scale`.
    guidance: Float | None = Field(None, ge=0, le=20)
    enhance_prompt: bool | None = None


class ModelsLabEnterpriseKontextParams(_ModelsLabParams):
    """``POST /v1/enterprise/flux_kontext_dev/img2img`` (its docs require only ``prompt``)."""

    init_image: ImageRef | None = None
    init_image_2: ImageRef | None = None
    strength: Float | None = Field(None, ge=0, le=1)
    instant_response: bool | None = None


class AimlApiKontextParams(_Params):
    """``POST /v1/images/generations`` with a Kontext image-to-image ``model``.

    Unknown fields are refused: the endpoint's schema is short and fully documented, so an
    unknown field is a typo the provider would ignore or reject after we had queued the job.
    """

    model_config = ConfigDict(extra="forbid")

    model: Literal["flux/kontext-max/image-to-image", "flux/kontext-pro/image-to-image"]
    prompt: Annotated[
        str, StringConstraints(max_length=AIMLAPI_PROMPT_MAX), AfterValidator(_not_blank)
    ]
    image_url: ImageRefs
    num_images: Int | None = Field(None, ge=1, le=4)
    seed: Int | None = Field(None, ge=1)
    guidance_scale: Float | None = Field(None, ge=1, le=20)
    safety_tolerance: SafetyTolerance | None = None
    output_format: Literal["jpeg", "png"] | None = None
    aspect_ratio: AspectRatio | None = None
