"""Images that arrive as base64 text: ``data:`` URIs and ModelsLab's ``.base64`` files.

Both decode in chunks straight to a file, hashing as they go, so memory stays flat however
large the payload; the decoded size is capped while decoding.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from service.errors import PermanentError

CHUNK_CHARS = 64 * 1024  # a multiple of 4 keeps most chunks free of a carried remainder
_WHITESPACE = b" \t\r\n\f\v"
# RFC 2397: data:[<mediatype>][;base64],<data>; parameters may sit between the two.
_DATA_URI_HEADER = re.compile(rb"^data:(?P<type>[^;,]*)(?P<params>(;[^;,]*)*),", re.IGNORECASE)
_MAX_HEADER = 256


def write_data_uri(uri: str, dest: Path, max_bytes: int) -> tuple[int, str]:
    """Decode a ``data:image/...;base64,`` URI into ``dest``; return (size, sha256 hex)."""
    # "replace" keeps one byte per character, so offsets in the text and the bytes agree;
    # a replaced character then fails base64 decoding as it should.
    offset = _data_header_end(uri[:_MAX_HEADER].encode("ascii", "replace"), code="invalid_input")
    if offset is None:
        raise PermanentError("not a data: URI", code="invalid_input")
    chunks = (
        uri[i : i + CHUNK_CHARS].encode("ascii", "replace")
        for i in range(offset, len(uri), CHUNK_CHARS)
    )
    return _decode_to(chunks, dest, max_bytes)


def decode_base64_file(src: Path, dest: Path, max_bytes: int) -> tuple[int, str]:
    """Decode a text file of base64 image data (optionally a data: URI) into ``dest``."""
    with src.open("rb") as f:
        head = f.read(_MAX_HEADER).lstrip(_WHITESPACE)
        offset = _data_header_end(head, code="invalid_image") or 0

        def chunks() -> Iterator[bytes]:
            yield head[offset:]
            while chunk := f.read(CHUNK_CHARS):
                yield chunk

        return _decode_to(chunks(), dest, max_bytes)


def _data_header_end(head: bytes, *, code: str) -> int | None:
    """Where the data starts after a ``data:`` header, None if there is no header."""
    if head[:5].lower() != b"data:":
        return None
    match = _DATA_URI_HEADER.match(head)
    if match is None:
        raise PermanentError("malformed data: URI", code=code)
    media_type = match["type"].strip().lower().decode("ascii", "replace")
    params = [p.strip().lower() for p in match["params"].split(b";") if p.strip()]
    if not media_type.startswith("image/"):
        raise PermanentError(f"data: URI is {media_type or 'text/plain'}, not an image", code=code)
    if b"base64" not in params:
        raise PermanentError("data: URI is not base64-encoded", code=code)
    return match.end()


def _decode_to(chunks: Iterable[bytes], dest: Path, max_bytes: int) -> tuple[int, str]:
    """Decode base64 ``chunks`` into ``dest`` atomically; return (size, sha256 hex)."""
    partial = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    size = 0
    try:
        with partial.open("wb") as out:
            for data in _Base64Decoder().decode(chunks):
                size += len(data)
                if size > max_bytes:
                    raise PermanentError(
                        f"decoded image exceeds {max_bytes} bytes", code="download_too_large"
                    )
                digest.update(data)
                out.write(data)
        if size == 0:
            raise PermanentError("no image data in base64 payload", code="invalid_image")
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return size, digest.hexdigest()


class _Base64Decoder:
    """Incremental strict base64: carries the remainder modulo 4 between chunks."""

    def __init__(self) -> None:
        self._carry = b""
        self._ended = False  # padding seen: anything after it is an error

    def decode(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            yield self.feed(chunk)
        yield self.finish()

    def feed(self, chunk: bytes) -> bytes:
        data = self._carry + chunk.translate(None, _WHITESPACE)
        whole = len(data) - len(data) % 4
        self._carry = data[whole:]
        return self._decode(data[:whole])

    def finish(self) -> bytes:
        carry, self._carry = self._carry, b""
        if len(carry) == 1:
            raise _invalid("length is not a multiple of 4")
        # Some encoders drop the trailing "="; restore it rather than refuse the image.
        return self._decode(carry + b"=" * (-len(carry) % 4))

    def _decode(self, data: bytes) -> bytes:
        if not data:
            return b""
        if self._ended:
            raise _invalid("data after padding")
        try:
            decoded = binascii.a2b_base64(data, strict_mode=True)
        except binascii.Error as exc:
            raise _invalid(str(exc)) from None
        self._ended = data.endswith(b"=")
        return decoded


def _invalid(reason: str) -> PermanentError:
    return PermanentError(f"invalid base64 image data: {reason}", code="invalid_image")
