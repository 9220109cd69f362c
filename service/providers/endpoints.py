"""The endpoints a job may name, and the validation of its params against them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from annotated_types import Ge, Le
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from service.errors import FieldError, InvalidRequest
from service.providers.params import (
    AimlApiKontextParams,
    ModelsLabEnterpriseKontextParams,
    ModelsLabKontextParams,
    ModelsLabText2ImgParams,
)

ProviderName = Literal["modelslab", "aimlapi"]

# The service sends its own key, webhook URL and track id; a client's would leak or hijack.
SERVICE_OWNED_FIELDS = ("key", "webhook", "track_id")

_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True)
class EndpointSpec:
    """One endpoint: where it lives, what it accepts and how its results arrive."""

    name: str
    provider: ProviderName
    path: str
    params_model: type[BaseModel]
    fetch_path_template: str | None
    input_fields: tuple[str, ...]
    uses_webhook: bool
    key_setting: str


ENDPOINTS: Mapping[str, EndpointSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            EndpointSpec(
                name="modelslab/text2img",
                provider="modelslab",
                path="/v6/images/text2img",
                params_model=ModelsLabText2ImgParams,
                fetch_path_template="/v6/images/fetch/{id}",
                input_fields=("ip_adapter_image",),
                uses_webhook=True,
                key_setting="modelslab_api_key",
            ),
            EndpointSpec(
                name="modelslab/img2img",
                provider="modelslab",
                path="/v6/images/img2img",
                params_model=ModelsLabKontextParams,
                fetch_path_template="/v6/images/fetch/{id}",
                input_fields=("init_image", "init_image_2"),
                uses_webhook=True,
                key_setting="modelslab_api_key",
            ),
            EndpointSpec(
                name="modelslab-enterprise/flux_kontext_dev/img2img",
                provider="modelslab",
                path="/v1/enterprise/flux_kontext_dev/img2img",
                params_model=ModelsLabEnterpriseKontextParams,
                fetch_path_template="/v1/enterprise/flux_kontext_dev/fetch/{id}",
                input_fields=("init_image", "init_image_2"),
                uses_webhook=True,
                key_setting="modelslab_enterprise_api_key",
            ),
            EndpointSpec(
                name="aimlapi/images/generations",
                provider="aimlapi",
                path="/v1/images/generations",
                params_model=AimlApiKontextParams,
                fetch_path_template=None,
                input_fields=("image_url",),
                uses_webhook=False,
                key_setting="aimlapi_api_key",
            ),
        )
    }
)


def get_endpoint(name: str) -> EndpointSpec:
    """The endpoint called ``name``; InvalidRequest on ``endpoint`` naming the valid ones."""
    try:
        return ENDPOINTS[name]
    except (KeyError, TypeError):
        valid = ", ".join(ENDPOINTS)
        raise InvalidRequest([FieldError("endpoint", f"must be one of: {valid}")]) from None


def validate_params(endpoint: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``params`` against the endpoint's documented limits; return the wire form.

    Raises InvalidRequest with one ``params.<field>`` entry per problem.
    """
    spec = get_endpoint(endpoint)
    if not isinstance(params, Mapping):
        raise InvalidRequest([FieldError("params", "must be an object")])
    errors = [
        FieldError(f"params.{name}", "is set by the service; remove it from params")
        for name in SERVICE_OWNED_FIELDS
        if name in params
    ]
    errors += [
        FieldError(f"params.{str(name)[:64]}", "is not a valid field name")
        for name in params
        if not (isinstance(name, str) and _FIELD_NAME.fullmatch(name))
    ]
    candidate = {k: v for k, v in params.items() if k not in SERVICE_OWNED_FIELDS}
    try:
        model = spec.params_model.model_validate(candidate)
    except ValidationError as exc:
        errors += field_errors(spec.params_model, exc.errors())
        model = None
    if errors or model is None:
        raise InvalidRequest(errors)
    return model.model_dump(mode="json", exclude_none=True)


def expected_size(endpoint: str, params: Mapping[str, Any]) -> tuple[int, int] | None:
    """The output size the request fixes, or None when it does not fix one reliably.

    ModelsLab rounds sizes to its models' latent grid (8 px for text2img, 16 px for Flux
    Kontext), and upscaling changes them, so only sizes it keeps are reported. AI/ML API
    cannot be given a size, and its one documented pixel size (16:9 = 1184x880) is not even
    16:9, while Kontext follows the input image: no size is reported for it.
    """
    spec = get_endpoint(endpoint)
    wire = _wire_or_none(endpoint, params)
    if spec.provider != "modelslab" or wire is None:
        return None
    width, height = wire.get("width"), wire.get("height")
    if not isinstance(width, int) or not isinstance(height, int):
        return None
    if wire.get("upscale") or wire.get("highres_fix"):
        return None
    grid = 8 if spec.params_model is ModelsLabText2ImgParams else 16
    if width % grid or height % grid:
        return None
    return width, height


def expected_count(endpoint: str, params: Mapping[str, Any]) -> int:
    """How many images the request asks for: ``samples`` or ``num_images``, default 1."""
    wire = _wire_or_none(endpoint, params) or {}
    count = wire.get("num_images", wire.get("samples", 1))
    return count if isinstance(count, int) else 1


def _wire_or_none(endpoint: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
    # These run on stored jobs, long after submission: params that a later, stricter
    # release would refuse must not make archiving fail, only make the answer unknown.
    try:
        return validate_params(endpoint, params)
    except InvalidRequest:
        return None


def field_errors(model: type[BaseModel], details: list[ErrorDetails]) -> list[FieldError]:
    """Pydantic errors as ``params.<field>`` entries whose messages name the limit."""
    seen: set[FieldError] = set()
    result: list[FieldError] = []
    for detail in details:
        loc = ".".join(str(part) for part in detail["loc"])
        entry = FieldError(f"params.{loc}" if loc else "params", _message(model, detail))
        if entry not in seen:
            seen.add(entry)
            result.append(entry)
    return result


_TYPE_MESSAGES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
}
_FIXED_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a documented field of this endpoint",
    "bool_type": 'must be true or false ("yes"/"no" also accepted)',
    "bool_parsing": 'must be true or false ("yes"/"no" also accepted)',
    "string_type": "must be a string",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
}


_BOUND_WORDS = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}


def _message(model: type[BaseModel], detail: ErrorDetails) -> str:
    kind = detail["type"]
    ctx = detail.get("ctx") or {}
    between = _between(model, str(detail["loc"][0]) if detail["loc"] else "")
    # Our own validators raise PydanticCustomError with messages already written for people.
    message = _FIXED_MESSAGES.get(kind, str(detail["msg"]))
    if kind in _BOUND_WORDS:
        key, words = _BOUND_WORDS[kind]
        message = f"must be {between}" if between else f"must be {words} {ctx.get(key)}"
    elif kind in _TYPE_MESSAGES:
        message = f"{_TYPE_MESSAGES[kind]} {between}" if between else _TYPE_MESSAGES[kind]
    elif kind == "string_too_long":
        message = f"must be at most {ctx.get('max_length')} characters"
    elif kind == "string_too_short":
        message = "must not be empty"
    elif kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        several = " or " in expected
        message = f"must be {'one of ' if several else ''}{expected.replace(' or ', ', ')}"
    return message


def _between(model: type[BaseModel], field: str) -> str | None:
    """ "between 1 and 4" when the field has an inclusive range at both ends."""
    info = model.model_fields.get(field)
    if info is None:
        return None
    lower = next((m.ge for m in info.metadata if isinstance(m, Ge)), None)
    upper = next((m.le for m in info.metadata if isinstance(m, Le)), None)
    if lower is None or upper is None:
        return None
    return f"between {lower} and {upper}"
