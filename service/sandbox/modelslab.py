"""ModelsLab's routes: text2img, Kontext img2img (v6 and enterprise) and the fetch endpoints."""

from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass
from typing import Any, NoReturn

from flask import Blueprint, Response, abort, jsonify, request, url_for
from flask.typing import ResponseReturnValue

from service.sandbox import bodies
from service.sandbox.modes import ModeError, Modes
from service.sandbox.params import (
    FieldProblem,
    file_stem,
    integer,
    label,
    looks_like_url,
    optional_integer,
    truthy,
)
from service.sandbox.render import ImageSpec
from service.sandbox.state import Generation, SandboxState, StoredFile

INVALID_KEY = "bad-key"
MAX_SIDE = 1024
MAX_SAMPLES = 4


@dataclass(frozen=True)
class Endpoint:
    """What differs between the submit endpoints."""

    required: tuple[str, ...]
    fetch_view: str
    # Only the enterprise endpoint knows ``instant_response``.
    instant_response: bool = False


TEXT2IMG = Endpoint(("model_id", "prompt"), "modelslab.fetch")
IMG2IMG = Endpoint(("model_id", "prompt", "init_image"), "modelslab.fetch")
ENTERPRISE = Endpoint(("prompt",), "modelslab.enterprise_fetch", instant_response=True)
IMAGE_FIELDS = ("init_image", "init_image_2")


def modelslab_blueprint(state: SandboxState) -> Blueprint:
    """The routes under ``/api`` (the ``MODELSLAB_BASE_URL`` of a genvault using the sandbox)."""
    blueprint = Blueprint("modelslab", __name__)

    @blueprint.post("/v6/images/text2img")
    def text2img() -> ResponseReturnValue:
        return _submit(state, TEXT2IMG)

    @blueprint.post("/v6/images/img2img")
    def img2img() -> ResponseReturnValue:
        return _submit(state, IMG2IMG)

    @blueprint.post("/v1/enterprise/flux_kontext_dev/img2img")
    def enterprise_img2img() -> ResponseReturnValue:
        return _submit(state, ENTERPRISE)

    @blueprint.post("/v6/images/fetch", defaults={"request_id": None})
    @blueprint.post("/v6/images/fetch/<request_id>")
    def fetch(request_id: str | None) -> ResponseReturnValue:
        return _fetch(state, request_id)

    @blueprint.post("/v1/enterprise/flux_kontext_dev/fetch/<request_id>")
    def enterprise_fetch(request_id: str) -> ResponseReturnValue:
        return _fetch(state, request_id)

    return blueprint


@dataclass(frozen=True)
class _Request:
    """A submit's fields that shape its outputs, read and checked."""

    prompt: str
    width: int
    height: int
    samples: int
    seed: int | None
    as_base64: bool

    @classmethod
    def read(cls, body: dict[str, Any], modes: Modes) -> _Request:
        for name in (*IMAGE_FIELDS, "webhook"):
            # Image URLs are only checked for shape: the sandbox never fetches them.
            if body.get(name) not in (None, "") and not looks_like_url(body[name]):
                raise FieldProblem(f"The {label(name)} must be a valid URL.")
        return cls(
            prompt=body["prompt"],
            width=integer(body, "width", 512, 1, MAX_SIDE),
            height=integer(body, "height", 512, 1, MAX_SIDE),
            samples=integer(body, "samples", 1, 1, MAX_SAMPLES),
            seed=optional_integer(body, "seed", 0),
            as_base64=modes.base64 or truthy(body.get("base64")),
        )


def _submit(state: SandboxState, endpoint: Endpoint) -> ResponseReturnValue:
    config = state.config
    body = _json_body(config.default_modes)
    _check_key(body, config.default_modes)
    if body.get("track_id") is not None:
        state.store.count_submission(body["track_id"])
    # Like the real API: a missing field is an HTTP 200 whose message is an object.
    missing = {
        name: [f"The {label(name)} field is required."]
        for name in endpoint.required
        if not isinstance(body.get(name), str) or not body[name].strip()
    }
    if missing:
        _reply({"status": "error", "message": missing})
    try:
        modes = config.modes_for(body["prompt"])
    except ModeError as exc:
        _reply(bodies.error(str(exc), config.default_modes), 400)
    if modes.ratelimit and state.store.rate_limited(body["prompt"], modes.ratelimit):
        _reply(bodies.rate_limited(modes, config.retry_after_for(modes)), 429)
    if modes.error:
        _reply(bodies.error("Something went wrong, please try again. ([sandbox:error])", modes))
    try:
        wanted = _Request.read(body, modes)
    except FieldProblem as exc:
        _reply({"status": "error", "message": str(exc)})
    if modes.fail_first:
        modes = dataclasses.replace(modes, fail=state.store.fails(body["prompt"], modes.fail_first))

    deferred = modes.deferred or (
        endpoint.instant_response and truthy(body.get("instant_response"))
    )
    ready_at = time.monotonic() + (config.eta_for(modes) if deferred else 0.0)
    generation, files = _new_generation(state, endpoint, body, modes, wanted, ready_at=ready_at)
    state.store.add(generation, files)
    _schedule_webhook(state, generation, body.get("webhook"))
    return jsonify(bodies.processing(generation) if deferred else bodies.success(generation))


def _new_generation(
    state: SandboxState,
    endpoint: Endpoint,
    body: dict[str, Any],
    modes: Modes,
    wanted: _Request,
    *,
    ready_at: float,
) -> tuple[Generation, dict[str, StoredFile]]:
    seed = secrets.randbelow(2**32 - 1) + 1 if wanted.seed is None else wanted.seed
    stem = file_stem()
    extension = "base64" if wanted.as_base64 else "png"
    files = {
        f"{stem}-{index}.{extension}": StoredFile(
            ImageSpec(wanted.prompt, seed, index, wanted.width, wanted.height),
            wanted.as_base64,
            ready_at,
        )
        for index in range(wanted.samples)
    }
    meta: dict[str, Any] = {
        "prompt": wanted.prompt,
        "negative_prompt": body.get("negative_prompt") or "",
        "seed": seed,
        "width": wanted.width,
        "height": wanted.height,
        "samples": wanted.samples,
        "base64": "yes" if wanted.as_base64 else "no",
    }
    meta.update({name: body[name] for name in ("model_id", *IMAGE_FIELDS) if body.get(name)})
    generation_id = state.store.next_id()
    generation = Generation(
        id=generation_id,
        modes=modes,
        outputs=tuple(url_for("files", name=name, _external=True) for name in files),
        meta=meta,
        fetch_url=url_for(endpoint.fetch_view, request_id=generation_id, _external=True),
        ready_at=ready_at,
        generation_time=round(0.3 + 0.2 * wanted.samples, 2),
        track_id=body.get("track_id"),
    )
    return generation, files


def _fetch(state: SandboxState, request_id: str | None) -> ResponseReturnValue:
    defaults = state.config.default_modes
    body = _json_body(defaults)
    _check_key(body, defaults)
    wanted = str(body.get("request_id", "")) if request_id is None else request_id
    generation = state.store.generation(int(wanted)) if wanted.strip().isdigit() else None
    if generation is None:
        _reply(bodies.error(f"Request id {wanted!r} not found", defaults), 404)
    if generation.remaining() > 0:
        # A processing body has been seen with HTTP 400 in the wild.
        status = 400 if generation.modes.processing_400 else 200
        return jsonify(bodies.processing(generation)), status
    if generation.modes.fail:
        return jsonify(bodies.failed(generation))
    return jsonify(bodies.success(generation))


def _schedule_webhook(state: SandboxState, generation: Generation, url: Any) -> None:
    delay = state.config.webhook_delay_for(generation.modes)
    if not url or delay is None:
        return
    state.webhooks.schedule(
        url,
        bodies.webhook(generation),
        delay=generation.remaining() + delay,
        times=2 if generation.modes.webhook_twice else 1,
    )


def _json_body(modes: Modes) -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        _reply(bodies.error("The request body must be a JSON object", modes), 400)
    return body


def _check_key(body: dict[str, Any], modes: Modes) -> None:
    key = body.get("key")
    if not isinstance(key, str) or not key.strip() or key == INVALID_KEY:
        _reply(bodies.error("Invalid API key", modes), 401)


def _reply(body: dict[str, Any], status: int = 200) -> NoReturn:
    response: Response = jsonify(body)
    response.status_code = status
    abort(response)
