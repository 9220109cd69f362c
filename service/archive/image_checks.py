"""Checks that a downloaded file is a whole PNG, JPEG or WebP image of sane size."""

from __future__ import annotations

import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from PIL import Image, ImageFile

from service.errors import PermanentError

ImageFormat = Literal["png", "jpeg", "webp"]


@dataclass(frozen=True)
class _Kind:
    content_type: str
    extension: str
    pillow_format: str
    label: str


_KINDS: dict[ImageFormat, _Kind] = {
    "png": _Kind("image/png", "png", "PNG", "PNG"),
    "jpeg": _Kind("image/jpeg", "jpg", "JPEG", "JPEG"),
    "webp": _Kind("image/webp", "webp", "WEBP", "WebP"),
}
_CONTENT_TYPE_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
}
_PNG_MAX_CHUNK = 2**31 - 1  # the PNG spec's limit
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by IHDR colour type
# Above this many decoded bytes an image is checked in a streaming way (see below).
_DECODE_IN_MEMORY_BYTES = 32 * 1024 * 1024
# Says nothing about the bytes, so it cannot contradict them.
_UNLABELLED = frozenset({"", "application/octet-stream", "binary/octet-stream"})
# Pillow raises more than OSError on hostile input (its plugins use SyntaxError, struct.error
# and friends); each of these means the file is not a usable image.
_DECODE_ERRORS = (
    OSError,
    ValueError,
    TypeError,
    SyntaxError,
    EOFError,
    IndexError,
    struct.error,
)


class InvalidImage(PermanentError):
    """The file is not an acceptable image."""

    code = "invalid_image"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid image: {reason}")


@dataclass(frozen=True)
class ImageInfo:
    """What a verified image is."""

    format: ImageFormat
    content_type: str
    extension: str
    width: int
    height: int


def verify_image(
    path: Path,
    *,
    max_pixels: int,
    declared_content_type: str | None = None,
    max_bytes: int | None = None,
    on_decoded: Callable[[Image.Image], None] | None = None,
) -> ImageInfo:
    """Check ``path`` and describe the image, or raise :class:`InvalidImage`.

    ``on_decoded`` is handed the image once it has passed, if the check decoded it whole (all
    but large JPEGs and PNGs, which are checked without holding their pixels), so a caller
    can make something of its pixels without a second decode (and change them: the check
    is done with them). What it raises is its own: it is not an :class:`InvalidImage`.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Pillow would pad a truncated image silently; refuse to verify rather than lie.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; cannot detect truncation")
    size = path.stat().st_size
    if size == 0:
        raise InvalidImage("empty file")
    if max_bytes is not None and size > max_bytes:
        raise InvalidImage(f"too large: {size} bytes > {max_bytes}")
    with path.open("rb") as f:
        head = f.read(512)
    fmt = sniff(head)
    if fmt is None:
        raise InvalidImage(f"not a PNG, JPEG or WebP (looks like {describe(head)})")
    kind = _KINDS[fmt]
    _check_label(declared_content_type, kind)
    _check_container(path, fmt, size)
    width, height, decoded = _decode(path, kind, max_pixels)
    if decoded is not None and on_decoded is not None:
        on_decoded(decoded)
    return ImageInfo(fmt, kind.content_type, kind.extension, width, height)


def sniff(head: bytes) -> ImageFormat | None:
    """The allowed format the magic bytes announce, if any."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def describe(head: bytes) -> str:
    """A short human guess at what a rejected file is, for the job's error message."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    guesses = (
        (head.startswith((b"GIF87a", b"GIF89a")), "GIF"),
        (b"<svg" in text, "SVG"),
        (text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")), "HTML"),
        (text.startswith(b"<?xml"), "XML"),
        (text.startswith((b"{", b"[")), "JSON"),
        (text.startswith(b"data:"), "a data: URI"),
        (head.startswith(b"%PDF"), "PDF"),
        (head[:4] == b"RIFF", "a non-WebP RIFF file"),
    )
    return next((name for matched, name in guesses if matched), "unknown data")


def _check_label(declared: str | None, kind: _Kind) -> None:
    if declared is None:
        return
    media_type = declared.split(";", 1)[0].strip().lower()
    media_type = _CONTENT_TYPE_ALIASES.get(media_type, media_type)
    if media_type in _UNLABELLED or media_type == kind.content_type:
        return
    raise InvalidImage(f"mislabelled: header says {media_type}, bytes are {kind.label}")


def _check_container(path: Path, fmt: ImageFormat, size: int) -> None:
    """Check the file's own framing: Pillow stops reading once it has the pixels it needs."""
    if fmt == "png":
        with path.open("rb") as f:
            problem = _png_chunks_problem(f)
        if problem:
            raise InvalidImage(problem)
    elif fmt == "webp":
        with path.open("rb") as f:
            f.seek(4)
            riff_size = size if len(head := f.read(4)) < 4 else int.from_bytes(head, "little")
        if size < riff_size + 8:
            raise InvalidImage("truncated")
        if size > riff_size + 8:
            raise InvalidImage("trailing data after the WebP image")


def _png_chunks_problem(f: BinaryIO) -> str | None:
    """Walk every chunk checking its CRC, up to IEND; what is wrong, or None."""
    f.seek(8)
    while True:
        header = f.read(8)
        if len(header) < 8:
            return "truncated"
        length, chunk_type = struct.unpack(">I4s", header)
        if length > _PNG_MAX_CHUNK:
            return "corrupt PNG chunk length"
        crc = zlib.crc32(chunk_type)
        while length:
            block = f.read(min(length, 1 << 16))
            if not block:
                return "truncated"
            crc = zlib.crc32(block, crc)
            length -= len(block)
        stored = f.read(4)
        if len(stored) < 4:
            return "truncated"
        if int.from_bytes(stored, "big") != crc:
            return f"corrupt: bad CRC in PNG {chunk_type.decode('latin-1')!r} chunk"
        if chunk_type == b"IEND":
            # Data after IEND is how PNG polyglots (PNG + HTML or ZIP) are built.
            return "trailing data after PNG IEND" if f.read(1) else None


def _decode(path: Path, kind: _Kind, max_pixels: int) -> tuple[int, int, Image.Image | None]:
    """Open with only the sniffed format's decoder, cap the pixels, then decode fully.

    Also returns the decoded image when it was loaded whole (None when it was checked in a
    streaming way); its pixels outlive the closed file.
    """
    # catch_warnings swaps the process-wide filter list, so a concurrent thread may briefly
    # see this one filter. It only concerns Pillow's bomb warning, and every Pillow open in
    # the service goes through here, so the overlap is harmless.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path, formats=[kind.pillow_format]) as img:
                width, height = img.size
                if width <= 0 or height <= 0:
                    raise InvalidImage(f"bad dimensions: {width}x{height}")
                if width * height > max_pixels:
                    raise InvalidImage(f"too many pixels: {width}x{height} > {max_pixels}")
                whole = _decode_within_budget(path, img, kind)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise InvalidImage(f"too many pixels: {exc}") from None
        except _DECODE_ERRORS as exc:
            raise InvalidImage(_decode_reason(kind, exc)) from None
    return width, height, img if whole else None


def _decode_within_budget(path: Path, img: Image.Image, kind: _Kind) -> bool:
    """Decode every byte of pixel data, without holding a large image in memory.

    Small images are simply loaded. A large JPEG is decoded at 1/8 scale (the decoder still
    reads the whole entropy-coded stream, so truncation shows). A large PNG has its zlib
    stream inflated in bounded pieces and counted against what IHDR promises. Anything else
    large (WebP, interlaced PNG) is loaded whole: the pixel cap bounds it.

    True when ``img`` now holds the whole image at full size.
    """
    width, height = img.size
    if width * height * len(img.getbands()) <= _DECODE_IN_MEMORY_BYTES:
        img.load()
        return True
    if kind.pillow_format == "JPEG":
        img.draft(img.mode, ((width + 7) // 8, (height + 7) // 8))
        img.load()
        return False
    if kind.pillow_format == "PNG" and (problem := _png_pixel_data_problem(path)) != "interlaced":
        if problem:
            raise InvalidImage(problem)
        return False
    img.load()
    return True


def _png_pixel_data_problem(path: Path) -> str | None:
    """Inflate the IDAT stream in bounded steps; what is wrong with it, or None."""
    with path.open("rb") as f:
        f.seek(16)
        width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", f.read(13))
        if interlace:
            return "interlaced"
        channels = _PNG_CHANNELS.get(colour)
        if channels is None:
            return f"corrupt: PNG colour type {colour}"
        expected = height * (1 + (width * depth * channels + 7) // 8)
        inflater, produced = zlib.decompressobj(), 0
        f.seek(8)
        while header := f.read(8):
            length, chunk_type = struct.unpack(">I4s", header)
            if chunk_type == b"IEND":
                break
            if chunk_type != b"IDAT":
                f.seek(length + 4, 1)
                continue
            left = length
            while left:
                pending = f.read(min(left, 1 << 16))
                left -= len(pending)
                while pending:
                    try:
                        # max_length keeps a highly compressed block from inflating all at once.
                        produced += len(inflater.decompress(pending, 1 << 20))
                    except zlib.error as exc:
                        return f"corrupt PNG pixel data: {exc}"
                    pending = inflater.unconsumed_tail
                    if produced > expected:
                        return "corrupt: more PNG pixel data than the header allows"
            f.seek(4, 1)  # CRC, already checked by _png_chunks_problem
        produced += len(inflater.flush())
    if not inflater.eof or produced != expected:
        return "truncated"
    return None


def _decode_reason(kind: _Kind, exc: Exception) -> str:
    message = str(exc)
    if "truncated" in message or isinstance(exc, EOFError):
        return "truncated"
    return f"{kind.label} does not decode: {message or type(exc).__name__}"
