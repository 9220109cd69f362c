"""Generators of good and bad image files for the verify, payload and download tests."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

from PIL import Image


def image_bytes(fmt: str, width: int = 32, height: int = 24) -> bytes:
    """A valid image in ``fmt`` ("PNG", "JPEG", "WEBP", "GIF") with some detail in it."""
    img = Image.new("RGB", (width, height), (200, 40, 90))
    for x in range(0, width, 3):
        img.putpixel((x, x % height), (x % 256, 255 - x % 256, 17))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def png(path: Path, width: int = 32, height: int = 24) -> Path:
    return write(path, image_bytes("PNG", width, height))


def jpeg(path: Path, width: int = 32, height: int = 24) -> Path:
    return write(path, image_bytes("JPEG", width, height))


def webp(path: Path, width: int = 32, height: int = 24) -> Path:
    return write(path, image_bytes("WEBP", width, height))


def gif(path: Path) -> Path:
    return write(path, image_bytes("GIF"))


def truncated(path: Path, fmt: str, keep: float = 0.6) -> Path:
    """A valid image cut short: headers intact, pixel data missing."""
    data = image_bytes(fmt, 200, 150)
    return write(path, data[: int(len(data) * keep)])


def empty(path: Path) -> Path:
    return write(path, b"")


def html_error_page(path: Path) -> Path:
    return write(
        path,
        b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>"
        b"<body><h1>Not Found</h1></body></html>\n",
    )


def svg(path: Path) -> Path:
    return write(
        path,
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b'<script>alert(1)</script><rect width="10" height="10"/></svg>\n',
    )


def random_bytes(path: Path, size: int = 4096) -> Path:
    # A fixed first byte keeps os.urandom from ever producing a valid magic by chance.
    return write(path, b"\x00" + os.urandom(size - 1))


def oversize(path: Path, size: int) -> Path:
    """A valid PNG padded past ``size`` bytes with a private ancillary chunk."""
    data = image_bytes("PNG")
    padding = max(size - len(data) + 1, 0)
    chunk = _png_chunk(b"zzPd", b"\x00" * padding)
    return write(path, data[:-12] + chunk + data[-12:])  # before IEND


def png_header_bomb(path: Path, width: int = 30000, height: int = 30000) -> Path:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (no real pixel data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\x00" * 64)
    return write(
        path,
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b""),
    )


def png_compression_bomb(path: Path, width: int = 6000, height: int = 6000) -> Path:
    """A genuine, highly compressible greyscale PNG: a few KiB that inflate to width*height."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + one byte per pixel
    parts = [compressor.compress(row) for _ in range(height)]
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return write(
        path,
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b""),
    )


def corrupt_png(path: Path, *, fix_crc: bool = True) -> Path:
    """A PNG whose compressed pixel data is garbage; with ``fix_crc`` its CRC still matches."""
    data = bytearray(image_bytes("PNG", 64, 64))
    at = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[at : at + 4])[0]
    body = bytearray(data[at + 8 : at + 8 + length])
    body[2:42] = b"\xff" * 40  # keep the two-byte zlib header, ruin the deflate stream
    chunk = _png_chunk(b"IDAT", bytes(body))
    if not fix_crc:
        chunk = chunk[:-4] + data[at + 8 + length : at + 12 + length]  # the old CRC
    return write(path, bytes(data[:at]) + chunk + bytes(data[at + 12 + length :]))


def with_trailer(path: Path, fmt: str, trailer: bytes = b"<html>polyglot</html>") -> Path:
    """A valid image followed by extra bytes (how polyglot files are made)."""
    return write(path, image_bytes(fmt) + trailer)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)
