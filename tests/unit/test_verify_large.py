"""Large images are verified without decoding them whole (see verify._decode_within_budget)."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import pytest
from PIL import Image

from service.archive.image_checks import InvalidImage, verify_image

# 4000x3000 RGB decodes to 36 MB: above the in-memory budget, so the streaming path runs.
W, H = 4000, 3000


def _chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def _png(rows: int = H, cut: float | None = None, interlace: int = 0) -> bytes:
    raw = (b"\x00" + bytes(W * 3)) * rows
    stream = zlib.compress(raw, 1)
    if cut is not None:
        stream = stream[: int(len(stream) * cut)]
    ihdr = W.to_bytes(4, "big") + H.to_bytes(4, "big") + bytes([8, 2, 0, 0, interlace])
    # CRCs are correct, so only the pixel data itself can give a problem away.
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", stream)
        + _chunk(b"IEND", b"")
    )


def test_a_large_png_streams_through(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(_png())
    decoded: list[Image.Image] = []
    info = verify_image(path, max_pixels=50_000_000, on_decoded=decoded.append)
    assert (info.width, info.height, info.format) == (W, H, "png")
    assert decoded == []  # its pixels were never all in memory, so there are none to hand on


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_png(cut=0.5), "truncated"),
        (_png(rows=H - 1), "truncated"),
        (_png(rows=H + 1), "more PNG pixel data"),
    ],
)
def test_a_large_png_with_bad_pixel_data_is_refused_even_with_valid_crcs(
    tmp_path: Path, data: bytes, reason: str
) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(data)
    with pytest.raises(InvalidImage, match=reason):
        verify_image(path, max_pixels=50_000_000)


def test_a_large_truncated_jpeg_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.effect_noise((W, H), 60).convert("RGB").save(buf, "JPEG", quality=80)
    good, bad = tmp_path / "big.jpg", tmp_path / "cut.jpg"
    good.write_bytes(buf.getvalue())
    bad.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert verify_image(good, max_pixels=50_000_000).width == W
    with pytest.raises(InvalidImage, match="truncated"):
        verify_image(bad, max_pixels=50_000_000)
