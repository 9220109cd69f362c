"""The OpenAPI 3.1 description of the HTTP API, served at /openapi.json."""

from __future__ import annotations

from typing import Any

from service import __version__
from service.jobs.states import JobStatus

_ERROR = {"$ref": "#/components/schemas/Error"}
_JOB = {"$ref": "#/components/schemas/Job"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def document() -> dict[str, Any]:
    from service.api.jobs import JobRequest

    job_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    unauthorized = _json(_ERROR, "missing or invalid bearer token")
    return {
        "openapi": "3.1.0",
        "info": {"title": "genvault", "version": __version__},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "JobRequest": JobRequest.model_json_schema(),
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "errors": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "field": {"type": "string"},
                                            "message": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        }
                    },
                },
                "Asset": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "key": {"type": ["string", "null"]},
                        "url": {"type": ["string", "null"]},
                        "sha256": {"type": "string"},
                        "size": {"type": "integer"},
                        "content_type": {"type": "string"},
                        "width": {"type": "integer"},
                        "height": {"type": "integer"},
                    },
                },
                "Job": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "track_id": {"type": "string"},
                        "endpoint": {"type": "string"},
                        "status": {"enum": [s.value for s in JobStatus]},
                        "created_at": {"type": "string", "format": "date-time"},
                        "updated_at": {"type": "string", "format": "date-time"},
                        "provider_request_id": {"type": ["string", "null"]},
                        "error": {
                            "oneOf": [
                                {"type": "null"},
                                {
                                    "type": "object",
                                    "properties": {
                                        "code": {"type": "string"},
                                        "message": {"type": "string"},
                                    },
                                },
                            ]
                        },
                        "metadata": {"type": "object"},
                        "nsfw_content_detected": {"type": ["boolean", "null"]},
                        "assets": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Asset"},
                        },
                        "manifest_key": {"type": ["string", "null"]},
                    },
                },
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/jobs": {
                "post": {
                    "summary": "Submit a generation job",
                    "parameters": [
                        {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}
                    ],
                    "requestBody": _json({"$ref": "#/components/schemas/JobRequest"}, "the job"),
                    "responses": {
                        "202": _json(_JOB, "accepted"),
                        "200": _json(_JOB, "the job an earlier request with this key created"),
                        "401": unauthorized,
                        "409": _json(_ERROR, "Idempotency-Key reused with another request"),
                        "422": _json(_ERROR, "invalid request, one entry per bad field"),
                    },
                },
                "get": {
                    "summary": "List jobs, newest first",
                    "parameters": [
                        {"name": n, "in": "query", "schema": {"type": t}}
                        for n, t in (
                            ("status", "string"),
                            ("endpoint", "string"),
                            ("limit", "integer"),
                            ("cursor", "string"),
                        )
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "jobs": {"type": "array", "items": _JOB},
                                    "next_cursor": {"type": ["string", "null"]},
                                },
                            },
                            "a page of jobs",
                        ),
                        "401": unauthorized,
                    },
                },
            },
            "/v1/jobs/{id}": {
                "get": {
                    "summary": "Show a job",
                    "parameters": [job_id],
                    "responses": {
                        "200": _json(_JOB, "the job"),
                        "404": _json(_ERROR, "no such job"),
                    },
                }
            },
            "/v1/jobs/{id}/retry": {
                "post": {
                    "summary": "Re-run a failed job's archive step, or its submission",
                    "parameters": [job_id],
                    "responses": {
                        "202": _json(_JOB, "queued again"),
                        "409": _json(_ERROR, "the job is not failed"),
                    },
                }
            },
            "/webhooks/{provider}/{track_id}": {
                "post": {
                    "summary": "Provider callback (ModelsLab)",
                    "security": [],
                    "parameters": [
                        {
                            "name": "provider",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "track_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "token",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "200": {"description": "recorded (new or duplicate)"},
                        "400": _json(_ERROR, "not JSON"),
                        "401": _json(_ERROR, "bad token"),
                        "404": _json(_ERROR, "unknown job"),
                        "413": _json(_ERROR, "body too large"),
                    },
                }
            },
            "/healthz": {"get": {"security": [], "responses": {"200": {"description": "alive"}}}},
            "/readyz": {
                "get": {
                    "security": [],
                    "responses": {
                        "200": {"description": "database and archive reachable"},
                        "503": {"description": "not ready"},
                    },
                }
            },
            "/metrics": {
                "get": {"security": [], "responses": {"200": {"description": "Prometheus"}}}
            },
        },
    }
