"""Deterministic stand-in images: the same prompt, seed and index always give the same bytes."""

from __future__ import annotations

import base64
import functools
import hashlib
import io
from dataclasses import dataclass
from typing import Literal

from PIL import Image

ImageFormat = Literal["png", "jpeg"]

MEDIA_TYPES: dict[ImageFormat, str] = {"png": "image/png", "jpeg": "image/jpeg"}
EXTENSIONS: dict[ImageFormat, str] = {"png": "png", "jpeg": "jpg"}

# A GRID x GRID tile of colours drawn from the hash, scaled up smoothly: distinct per input,
# cheap to render at any size, and it compresses well.
_GRID = 6


@dataclass(frozen=True)
class ImageSpec:
    """Everything that determines one output image."""

    prompt: str
    seed: int
    index: int
    width: int
    height: int
    format: ImageFormat = "png"

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]


@functools.lru_cache(maxsize=32)
def render(spec: ImageSpec) -> bytes:
    """The encoded image for ``spec``, exactly ``spec.width`` x ``spec.height`` pixels."""
    key = f"{spec.prompt}\0{spec.seed}\0{spec.index}".encode()
    colours = hashlib.shake_256(key).digest(_GRID * _GRID * 3)
    tile = Image.frombytes("RGB", (_GRID, _GRID), colours)
    image = tile.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    if spec.format == "png":
        # Speed over size: these images live for a test run or a first try.
        image.save(buffer, format="PNG", compress_level=1)
    else:
        image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def render_base64_text(spec: ImageSpec) -> str:
    """The image as ModelsLab's ``.base64`` files hold it: base64 behind a data-URI prefix."""
    encoded = base64.b64encode(render(spec)).decode("ascii")
    return f"data:{spec.media_type};base64,{encoded}"
