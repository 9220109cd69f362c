"""ModelsLab's response and webhook bodies, shaped as PROVIDERS.md records them."""

from __future__ import annotations

from typing import Any

from service.sandbox.modes import Modes
from service.sandbox.state import Generation

FAILED_MESSAGE = "Failed, Try Again"
RATE_LIMIT_MESSAGE = "Rate limit exceeded. Maximum 5 queued requests allowed."


def _message(modes: Modes, text: str) -> dict[str, str]:
    # Older responses spell the key "messege"; clients must read both.
    return {"messege" if modes.messege else "message": text}


def error(text: str, modes: Modes) -> dict[str, Any]:
    return {"status": "error", **_message(modes, text)}


def rate_limited(modes: Modes, retry_after: int) -> dict[str, Any]:
    return {**error(RATE_LIMIT_MESSAGE, modes), "retry_after": retry_after}


def public_id(generation: Generation) -> int | str | None:
    """The id as this request's modes want it typed (enterprise servers send null)."""
    if generation.modes.id_null:
        return None
    return str(generation.id) if generation.modes.id_string else generation.id


def success(generation: Generation) -> dict[str, Any]:
    outputs = list(generation.outputs)
    proxy_links: list[str] | dict[str, str] = (
        {str(index): url for index, url in enumerate(outputs)}
        if generation.modes.proxy_object
        else list(outputs)
    )
    return {
        "status": "success",
        "generationTime": generation.generation_time,
        "id": public_id(generation),
        "output": outputs,
        "proxy_links": proxy_links,
        "nsfw_content_detected": False,
        "meta": dict(generation.meta),
    }


def processing(generation: Generation) -> dict[str, Any]:
    return {
        "status": "processing",
        "tip": "Your image is processing in background, you can get this image using fetch API",
        "eta": round(generation.remaining(), 3),
        "message": "Try to fetch request after seconds estimated",
        "fetch_result": generation.fetch_url,
        "id": public_id(generation),
        "output": "" if generation.modes.output_empty_string else [],
        "future_links": list(generation.outputs),
        "meta": dict(generation.meta),
    }


def failed(generation: Generation) -> dict[str, Any]:
    return {
        "status": "failed",
        "id": public_id(generation),
        **_message(generation.modes, FAILED_MESSAGE),
        "output": "",
    }


def webhook(generation: Generation) -> dict[str, Any]:
    """What the provider POSTs to the request's ``webhook`` once the result is ready."""
    if generation.modes.fail:
        return {
            "status": "failed",
            "id": public_id(generation),
            **_message(generation.modes, FAILED_MESSAGE),
            "track_id": generation.track_id,
        }
    return {
        "status": "success",
        "id": public_id(generation),
        "output": list(generation.outputs),
        "generationTime": generation.generation_time,
        "track_id": generation.track_id,
        "meta": dict(generation.meta),
    }
