"""The JSON body of a /v1 request as its pydantic model, every problem a 422 naming the field.

The bytes go through service.strict_json first, so NaN, Infinity, numbers that overflow
and bodies nested too deep are refused before the model sees them, like any malformed JSON.
"""

from __future__ import annotations

from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from service import strict_json
from service.errors import FieldError, InvalidRequest

_M = TypeVar("_M", bound=BaseModel)


def field_errors(exc: ValidationError) -> list[FieldError]:
    return [
        FieldError(".".join(str(p) for p in e["loc"]) or "body", e["msg"]) for e in exc.errors()
    ]


def parse(model: type[_M], *, optional: bool = False) -> _M:
    """The request's JSON object as ``model``; an empty body is ``{}`` when ``optional``."""
    raw = request.get_data() if optional or request.is_json else b""
    if optional and not raw:
        raw = b"{}"
    elif not request.is_json:
        raise InvalidRequest([FieldError("body", "must be JSON (Content-Type: application/json)")])
    try:
        payload = strict_json.loads_object(raw)
    except strict_json.BadJson as exc:
        raise InvalidRequest([FieldError("body", exc.message)]) from None
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise InvalidRequest(field_errors(exc)) from None
