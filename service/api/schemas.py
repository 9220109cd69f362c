"""The JSON the API answers with, as pydantic models: one source of truth for the contract.

Views build these models and answer with ``respond(model)``; service.api.openapi turns the
same models into the OpenAPI components. A field added here is documented by construction.
"""

from __future__ import annotations

from typing import Any, Literal

from flask import Response, current_app
from pydantic import BaseModel, ConfigDict, Field

from service.jobs.shape import JobOut


class _Out(BaseModel):
    """A response model: built by our views, serialised by ``respond``."""


class FieldProblem(_Out):
    """One bad field of a 422 answer."""

    field: str = Field(description="where: a body path such as params.width, or a name")
    message: str


class ErrorDetail(_Out):
    code: str = Field(description="stable, machine-readable (invalid_request, not_found, ...)")
    message: str = Field(description="for humans; never carries secrets")
    errors: list[FieldProblem] | None = Field(
        default=None, description="present on 422 only: one entry per bad field"
    )
    retain_until: str | None = Field(
        default=None,
        description="present on 409 `retained` only: when S3 Object Lock lets the objects go "
        "(ISO 8601; the latest RetainUntilDate among them)",
    )


class ErrorBody(_Out):
    """Every 4xx and 5xx answer of the JSON API."""

    error: ErrorDetail


class JobList(_Out):
    """A page of jobs, newest first."""

    jobs: list[JobOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null at end")


class AuditReport(_Out):
    """The result of re-reading a job's archived objects."""

    # Other checks may add fields; they are passed through and stay valid.
    model_config = ConfigDict(extra="allow")

    ok: bool
    job_id: str
    manifest_key: str | None
    checked: int
    missing: list[str]
    altered: list[dict[str, Any]]
    unlisted: list[str]
    error: str | None


class Health(_Out):
    status: Literal["ok"]


class Readiness(_Out):
    status: Literal["ok", "unavailable"]
    checks: dict[str, Literal["ok", "unavailable"]]


class WebhookAck(_Out):
    status: Literal["accepted", "duplicate"] = Field(
        description="accepted: recorded; duplicate: the same body was recorded before"
    )


class SigningKeyOut(_Out):
    """The public key that verifies manifest signatures."""

    algorithm: Literal["Ed25519"]
    public_key: str = Field(description="the raw Ed25519 public key, base64")
    key_id: str = Field(description="names the key in each manifest's signature file")


def respond(model: BaseModel, status: int = 200) -> tuple[Response, int]:
    """Serialise a response model as the JSON body of the answer."""
    return respond_serialised(
        model.model_dump_json(exclude_none=isinstance(model, ErrorBody)), status
    )


def respond_serialised(body: str, status: int = 200) -> tuple[Response, int]:
    """An answer whose body a response model serialised beforehand (a hot path's constant)."""
    return current_app.response_class(body, status=status, mimetype="application/json"), status
