"""The OpenAPI 3.1 document served at /openapi.json, generated from the app itself.

Each view declares its operation next to its route, with the pydantic models of
service.api.schemas it answers with; ``document(app)`` walks ``app.url_map`` and turns those
declarations and models into paths and components. Nothing is written by hand twice.

Registering a route (one line above the view; the order of the two decorators is free)::

    @bp.get("/endpoints/<endpoint_id>")
    @documented("Show an endpoint", {200: EndpointOut}, errors=(404, 422))
    def show_endpoint(endpoint_id: str) -> ...:
        return respond(EndpointOut(...))

- ``responses`` maps a status to a response model (JSON), or to a ``Reply`` for another
  media type, a body without a model, or no body at all (``NO_CONTENT``, for 204). ``errors``
  adds ErrorBody answers with the usual description for each status. 401 is added unless
  ``public=True``; 414 (gunicorn refuses an over-long request line, as HTML) is added
  everywhere; 503 with a Retry-After header (service.api.errors maps an unreachable
  database to it) is added unless ``database=False``, which a view that never touches the
  database declares (health, the document itself, file links served from the store).
- ``scope`` is what a caller must hold: a ``Scope`` (403 naming it otherwise), or
  ``Authenticated.ANY`` for routes any valid credential may call. Every route that is not
  ``public`` declares one; ``unscoped(app)`` lists those that do not, and a test holds it at
  zero (the guard in service.api.auth refuses such a route to everyone meanwhile).
- ``body`` is the request body's model (``body_required=False`` when it may be left out);
  ``query`` and ``headers`` are ``Param``s. Path parameters come from the rule itself
  (``<job_id>`` becomes ``{job_id}``).
- Routes under ``EXCLUDED_PREFIXES`` (the HTML dashboard at /ui/) are left out by design.
  Any other route without a declaration is reported by ``undescribed(app)``, which a test
  holds at zero, so a new route cannot go undocumented.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from werkzeug.routing import Rule

from service import __version__
from service.access.scopes import Requirement, Scope
from service.api.schemas import ErrorBody

# HTML pages for people, not part of the machine contract.
EXCLUDED_PREFIXES = ("/ui/",)
# Flask's own static route, present only when a static folder exists.
EXCLUDED_ENDPOINTS = frozenset({"static"})

ERROR_DESCRIPTIONS: Mapping[int, str] = {
    400: "the body is not acceptable JSON (malformed, NaN/Infinity, or nested too deep)",
    401: "missing or invalid bearer token",
    403: "missing, invalid or expired signature",
    404: "not found",
    409: "the resource is not in a state that allows this",
    413: "the body is larger than the limit",
    422: "invalid request: one entry per bad field",
    503: "the database is unreachable; retry after Retry-After seconds",
}

_ATTR = "__genvault_operation__"
_COMPONENTS = "#/components/schemas/{model}"
_V = TypeVar("_V", bound=Callable[..., Any])


@dataclass(frozen=True)
class Param:
    name: str
    location: Literal["query", "header", "path"]
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Reply:
    """One documented answer that is not simply a JSON response model."""

    description: str
    model: type[BaseModel] | None = None
    # None: the answer has no body (204).
    media_type: str | None = "application/json"
    schema: Mapping[str, Any] | None = None
    # Response headers: ``Param``s with location "header".
    headers: tuple[Param, ...] = ()


@dataclass(frozen=True)
class Operation:
    summary: str
    responses: Mapping[int, Reply]
    body: type[BaseModel] | Reply | None = None
    params: tuple[Param, ...] = ()
    public: bool = False
    body_required: bool = True
    # What the caller must hold (service.api.auth enforces it); None only on public routes.
    scope: Requirement | None = None


# service.api.auth answers 403 with the missing scope named.
SCOPE_MISSING = Reply(
    "the credential lacks the scope this operation needs (the message names it), "
    "or holds it in no project",
    ErrorBody,
)

# gunicorn answers an over-long request line itself, before any view, and in HTML.
URI_TOO_LONG = Reply(
    "the request line is longer than the server accepts (answered by gunicorn)",
    media_type="text/html",
    schema={"type": "string"},
)

NO_CONTENT = Reply("done; no body", media_type=None)

# service.api.errors answers 503 with this header when the database cannot be reached.
RETRY_AFTER = Param(
    "Retry-After",
    "header",
    {"type": "integer", "minimum": 0},
    required=True,
    description="seconds to wait before retrying",
)
DATABASE_UNAVAILABLE = Reply(ERROR_DESCRIPTIONS[503], ErrorBody, headers=(RETRY_AFTER,))


def documented(
    summary: str,
    responses: Mapping[int, type[BaseModel] | Reply],
    *,
    errors: Iterable[int] = (),
    body: type[BaseModel] | Reply | None = None,
    query: Iterable[Param] = (),
    headers: Iterable[Param] = (),
    public: bool = False,
    database: bool = True,
    body_required: bool = True,
    scope: Requirement | None = None,
) -> Callable[[_V], _V]:
    """Declare the operation a view serves; see the module docstring."""
    replies: dict[int, Reply] = {
        status: r if isinstance(r, Reply) else Reply(_default_description(status), r)
        for status, r in responses.items()
    }
    for status in (*errors, *(() if public else (401,))):
        replies.setdefault(status, Reply(ERROR_DESCRIPTIONS[status], ErrorBody))
    if isinstance(scope, Scope):
        replies.setdefault(403, SCOPE_MISSING)
    replies.setdefault(414, URI_TOO_LONG)
    if database:
        replies.setdefault(503, DATABASE_UNAVAILABLE)
    op = Operation(summary, replies, body, (*query, *headers), public, body_required, scope)

    def mark(view: _V) -> _V:
        setattr(view, _ATTR, op)
        return view

    return mark


def _default_description(status: int) -> str:
    return ERROR_DESCRIPTIONS.get(status, "OK" if status < 300 else "error")


def operation_of(view: Callable[..., Any]) -> Operation | None:
    op = getattr(view, _ATTR, None)
    return op if isinstance(op, Operation) else None


def is_excluded(rule: Rule) -> bool:
    return rule.endpoint in EXCLUDED_ENDPOINTS or rule.rule.startswith(EXCLUDED_PREFIXES)


def undescribed(app: Flask) -> list[str]:
    """Routes that are neither declared with ``documented`` nor excluded by design."""
    return sorted(
        rule.rule
        for rule in app.url_map.iter_rules()
        if not is_excluded(rule) and operation_of(app.view_functions[rule.endpoint]) is None
    )


def unscoped(app: Flask) -> list[str]:
    """Described, non-public routes that declare no scope (the guard refuses them all)."""
    return sorted(
        rule.rule
        for rule in app.url_map.iter_rules()
        if not is_excluded(rule)
        and (op := operation_of(app.view_functions[rule.endpoint])) is not None
        and not op.public
        and op.scope is None
    )


def openapi_path(rule: Rule) -> str:
    """``/v1/jobs/<job_id>`` and ``/files/<path:key>`` as OpenAPI writes them."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)


# Keyed by (model, mode), as pydantic's models_json_schema answers.
_Refs = Mapping[Any, Mapping[str, Any]]


def _content(reply: Reply, refs: _Refs, mode: JsonSchemaMode) -> dict[str, Any]:
    if reply.media_type is None:
        return {}
    if reply.model is not None:
        schema: Mapping[str, Any] = refs[(reply.model, mode)]
    else:
        schema = reply.schema or {}
    return {reply.media_type: {"schema": dict(schema)}}


def _param_json(p: Param) -> dict[str, Any]:
    out: dict[str, Any] = {"schema": dict(p.schema)}
    if p.description:
        out["description"] = p.description
    return out


def _response_json(reply: Reply, refs: _Refs) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description}
    if content := _content(reply, refs, "serialization"):
        out["content"] = content
    if reply.headers:
        out["headers"] = {h.name: {"required": h.required, **_param_json(h)} for h in reply.headers}
    return out


def _operation_json(rule: Rule, op: Operation, refs: _Refs, operation_id: str) -> dict[str, Any]:
    declared = {p.name for p in op.params if p.location == "path"}
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in sorted(rule.arguments)
        if name not in declared
    ]
    for p in op.params:
        param: dict[str, Any] = {
            "name": p.name,
            "in": p.location,
            "required": p.required or p.location == "path",
            "schema": dict(p.schema),
        }
        if p.description:
            param["description"] = p.description
        params.append(param)
    out: dict[str, Any] = {
        "summary": op.summary,
        "operationId": operation_id,
        "responses": {
            str(status): _response_json(reply, refs)
            for status, reply in sorted(op.responses.items())
        },
    }
    if params:
        out["parameters"] = params
    if op.body is not None:
        body = op.body if isinstance(op.body, Reply) else Reply("the request", op.body)
        out["requestBody"] = {
            "required": op.body_required,
            "content": _content(body, refs, "validation"),
        }
    if op.public:
        out["security"] = []
    elif isinstance(op.scope, Scope):
        # OpenAPI 3.1 lets a non-OAuth scheme list the roles an operation needs.
        out["security"] = [{"bearer": [op.scope.value]}]
        out["x-genvault-scope"] = op.scope.value
    return out


def _models(ops: Iterable[Operation]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    seen: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    for op in ops:
        for reply in op.responses.values():
            if reply.model is not None:
                seen[(reply.model, "serialization")] = None
        body = op.body.model if isinstance(op.body, Reply) else op.body
        if body is not None:
            seen[(body, "validation")] = None
    return list(seen)


def document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every described route of ``app``."""
    described: list[tuple[Rule, Operation]] = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        op = operation_of(app.view_functions[rule.endpoint])
        if op is not None and not is_excluded(rule):
            described.append((rule, op))
    refs, schemas = models_json_schema(_models(op for _, op in described), ref_template=_COMPONENTS)
    paths: dict[str, dict[str, Any]] = {}
    for rule, op in described:
        methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        for method in methods:
            # The view's endpoint names the operation; a view with two methods has two.
            operation_id = rule.endpoint.replace(".", "_")
            if len(methods) > 1:
                operation_id += f"_{method.lower()}"
            paths.setdefault(openapi_path(rule), {})[method.lower()] = _operation_json(
                rule, op, refs, operation_id
            )
    return {
        "openapi": "3.1.0",
        "info": {"title": "genvault", "version": __version__},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas.get("$defs", {}),
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
