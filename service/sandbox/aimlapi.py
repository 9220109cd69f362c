"""The AI/ML API's synchronous image generation route (FLUX Kontext image-to-image)."""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from flask import Blueprint, Response, abort, jsonify, request, url_for
from flask.typing import ResponseReturnValue

from service.sandbox.modes import ModeError, Modes
from service.sandbox.params import (
    FieldProblem,
    file_stem,
    integer,
    looks_like_url,
    optional_integer,
)
from service.sandbox.render import EXTENSIONS, ImageFormat, ImageSpec, render
from service.sandbox.state import SandboxState, StoredFile

PATH = "/v1/images/generations"
INVALID_KEY = "bad-key"
MODELS = frozenset({"flux/kontext-max/image-to-image", "flux/kontext-pro/image-to-image"})
MAX_PROMPT = 4000
MAX_IMAGES = 4
# Pixel sizes per aspect ratio. The docs give 16:9 (the default) as 1184x880; the others are
# the sizes FLUX Kontext is known to produce.
SIZES: dict[str, tuple[int, int]] = {
    "21:9": (1568, 672),
    "16:9": (1184, 880),
    "4:3": (1184, 880),
    "3:2": (1248, 832),
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:4": (880, 1184),
    "9:16": (752, 1392),
    "9:21": (672, 1568),
}
FORMATS: dict[str, ImageFormat] = {"jpeg": "jpeg", "png": "png"}
CREDITS_PER_IMAGE = 120_000


def aimlapi_blueprint(state: SandboxState) -> Blueprint:
    """The routes under ``/aimlapi`` (the ``AIMLAPI_BASE_URL`` of a genvault using the sandbox)."""
    blueprint = Blueprint("aimlapi", __name__)

    @blueprint.post(PATH)
    def generations() -> ResponseReturnValue:
        return _generate(state)

    return blueprint


def _generate(state: SandboxState) -> ResponseReturnValue:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip() or key.strip() == INVALID_KEY:
        _error(401, "Invalid API key")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        _error(400, "The request body must be a JSON object")
    try:
        wanted = _parse(body)
        modes = state.config.modes_for(wanted.prompt)
    except (FieldProblem, ModeError) as exc:
        _error(400, str(exc))
    if modes.ratelimit and state.store.rate_limited(wanted.prompt, modes.ratelimit):
        _error(429, "Too many requests", retry_after=state.config.retry_after_for(modes))
    if modes.error:
        _error(500, "Internal server error ([sandbox:error])")

    seed = secrets.randbelow(2**31 - 1) + 1 if wanted.seed is None else wanted.seed
    width, height = wanted.size
    specs = [
        ImageSpec(wanted.prompt, seed, index, width, height, wanted.format)
        for index in range(wanted.count)
    ]
    stem = f"{int(time.time() * 1000)}-{file_stem()}"
    names = [f"{stem}-{spec.index}.{EXTENSIONS[spec.format]}" for spec in specs]
    now = time.monotonic()
    state.store.add_files({n: StoredFile(s, False, now) for n, s in zip(names, specs, strict=True)})
    urls = [url_for("files", name=name, _external=True) for name in names]
    if modes.images_shape:
        return jsonify(_images_shape(specs, urls, modes, wanted.prompt, seed))
    return jsonify(_data_shape(specs, urls, modes))


@dataclass(frozen=True)
class _Request:
    """The fields that shape the output; the others are only checked."""

    prompt: str
    count: int
    size: tuple[int, int]
    format: ImageFormat
    seed: int | None


def _parse(body: dict[str, Any]) -> _Request:
    if body.get("model") not in MODELS:
        raise FieldProblem(f"model must be one of: {', '.join(sorted(MODELS))}")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise FieldProblem("prompt is required")
    if len(prompt) > MAX_PROMPT:
        raise FieldProblem(f"prompt must be at most {MAX_PROMPT} characters")
    image_urls = body.get("image_url")
    image_urls = [image_urls] if isinstance(image_urls, str) else image_urls
    if not isinstance(image_urls, list) or not 1 <= len(image_urls) <= MAX_IMAGES:
        raise FieldProblem(f"image_url must be a URL or a list of 1 to {MAX_IMAGES} URLs")
    if not all(looks_like_url(url) for url in image_urls):
        raise FieldProblem("image_url must hold http(s) URLs")
    aspect_ratio = body.get("aspect_ratio") or "16:9"
    if aspect_ratio not in SIZES:
        raise FieldProblem(f"aspect_ratio must be one of: {', '.join(SIZES)}")
    image_format = FORMATS.get(str(body.get("output_format") or "jpeg"))
    if image_format is None:
        raise FieldProblem("output_format must be jpeg or png")
    return _Request(
        prompt=prompt,
        count=integer(body, "num_images", 1, 1, MAX_IMAGES),
        size=SIZES[aspect_ratio],
        format=image_format,
        seed=optional_integer(body, "seed", 1),
    )


def _data_shape(specs: list[ImageSpec], urls: list[str], modes: Modes) -> dict[str, Any]:
    if modes.b64:
        data = [
            {"url": None, "b64_json": base64.b64encode(render(spec)).decode("ascii")}
            for spec in specs
        ]
    else:
        data = [{"url": url, "b64_json": None} for url in urls]
    return {"data": data, "meta": {"usage": {"credits_used": CREDITS_PER_IMAGE * len(specs)}}}


def _images_shape(
    specs: list[ImageSpec], urls: list[str], modes: Modes, prompt: str, seed: int
) -> dict[str, Any]:
    images = [
        {
            # This shape has no b64_json: inline images come as data URIs, as fal's do.
            "url": _data_uri(spec) if modes.b64 else url,
            "content_type": spec.media_type,
            "file_name": None,
            "file_size": None,
            "width": spec.width,
            "height": spec.height,
        }
        for spec, url in zip(specs, urls, strict=True)
    ]
    return {
        "images": images,
        "timings": {},
        "seed": seed,
        "has_nsfw_concepts": [False] * len(specs),
        "prompt": prompt,
    }


def _data_uri(spec: ImageSpec) -> str:
    return f"data:{spec.media_type};base64,{base64.b64encode(render(spec)).decode('ascii')}"


def _error(status: int, message: str, **extra: Any) -> NoReturn:
    response: Response = jsonify(
        {
            "message": message,
            "path": PATH,
            "requestId": str(uuid.uuid4()),
            "statusCode": status,
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            **extra,
        }
    )
    response.status_code = status
    if "retry_after" in extra:
        response.headers["Retry-After"] = str(extra["retry_after"])
    abort(response)
