from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from service.archive.image_checks import ImageInfo, InvalidImage, verify_image
from tests.support import badfiles

MAX_PIXELS = 64_000_000


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (badfiles.png, ImageInfo("png", "image/png", "png", 32, 24)),
        (badfiles.jpeg, ImageInfo("jpeg", "image/jpeg", "jpg", 32, 24)),
        (badfiles.webp, ImageInfo("webp", "image/webp", "webp", 32, 24)),
    ],
)
def test_accepts_good_images(
    tmp_path: Path, make: Callable[[Path], Path], expected: ImageInfo
) -> None:
    path = make(tmp_path / "image")
    assert verify_image(path, max_pixels=MAX_PIXELS) == expected


def test_hands_on_the_decoded_pixels_of_an_image_that_passed(tmp_path: Path) -> None:
    path = tmp_path / "red.png"
    Image.new("RGB", (40, 30), (255, 0, 0)).save(path)
    seen: list[Image.Image] = []
    verify_image(path, max_pixels=MAX_PIXELS, on_decoded=seen.append)
    assert [(image.size, image.getpixel((39, 29))) for image in seen] == [((40, 30), (255, 0, 0))]


def test_hands_on_nothing_of_an_image_that_failed(tmp_path: Path) -> None:
    path = badfiles.truncated(tmp_path / "cut", "PNG")
    seen: list[Image.Image] = []
    with pytest.raises(InvalidImage):
        verify_image(path, max_pixels=MAX_PIXELS, on_decoded=seen.append)
    assert seen == []


def test_records_real_dimensions(tmp_path: Path) -> None:
    path = badfiles.png(tmp_path / "wide.png", width=300, height=7)
    info = verify_image(path, max_pixels=MAX_PIXELS)
    assert (info.width, info.height) == (300, 7)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (badfiles.empty, "empty file"),
        (badfiles.html_error_page, "not a PNG, JPEG or WebP (looks like HTML)"),
        (badfiles.svg, "not a PNG, JPEG or WebP (looks like SVG)"),
        (badfiles.gif, "not a PNG, JPEG or WebP (looks like GIF)"),
        (badfiles.random_bytes, "not a PNG, JPEG or WebP (looks like unknown data)"),
        (
            badfiles.png_header_bomb,
            "too many pixels: Image size (900000000 pixels) exceeds limit",
        ),
    ],
    ids=["empty", "html", "svg", "gif", "random", "header-bomb"],
)
def test_rejects_bad_files(tmp_path: Path, make: Callable[[Path], Path], reason: str) -> None:
    path = make(tmp_path / "bad")
    with pytest.raises(InvalidImage) as excinfo:
        verify_image(path, max_pixels=MAX_PIXELS)
    assert excinfo.value.reason.startswith(reason)
    assert excinfo.value.code == "invalid_image"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("keep", [0.3, 0.6, 0.99])
def test_truncation_anywhere_is_rejected(tmp_path: Path, fmt: str, keep: float) -> None:
    # 0.99 keeps every pixel of the PNG but loses its IEND: Pillow alone would accept it.
    path = badfiles.truncated(tmp_path / "t", fmt, keep)
    with pytest.raises(InvalidImage) as excinfo:
        verify_image(path, max_pixels=MAX_PIXELS)
    assert excinfo.value.reason == "truncated" or "does not decode" in excinfo.value.reason


def test_bad_png_crc_is_rejected(tmp_path: Path) -> None:
    path = badfiles.corrupt_png(tmp_path / "c.png", fix_crc=False)
    with pytest.raises(InvalidImage, match=r"corrupt: bad CRC in PNG 'IDAT' chunk"):
        verify_image(path, max_pixels=MAX_PIXELS)


def test_corrupt_pixel_data_is_rejected_by_the_decoder(tmp_path: Path) -> None:
    path = badfiles.corrupt_png(tmp_path / "c.png")
    with pytest.raises(InvalidImage, match=r"PNG does not decode"):
        verify_image(path, max_pixels=MAX_PIXELS)


@pytest.mark.parametrize(
    ("fmt", "reason"),
    [("PNG", "trailing data after PNG IEND"), ("WEBP", "trailing data after the WebP image")],
)
def test_polyglot_trailers_are_rejected(tmp_path: Path, fmt: str, reason: str) -> None:
    path = badfiles.with_trailer(tmp_path / "poly", fmt)
    with pytest.raises(InvalidImage) as excinfo:
        verify_image(path, max_pixels=MAX_PIXELS)
    assert excinfo.value.reason == reason


def test_pixel_cap_is_checked_before_decoding(tmp_path: Path) -> None:
    # 36 megapixels of zeros in a few KiB: decoding would allocate 36 MB.
    path = badfiles.png_compression_bomb(tmp_path / "bomb.png")
    assert path.stat().st_size < 200_000
    with pytest.raises(InvalidImage) as excinfo:
        verify_image(path, max_pixels=1_000_000)
    assert excinfo.value.reason == "too many pixels: 6000x6000 > 1000000"


def test_pixel_cap_applies_to_ordinary_images(tmp_path: Path) -> None:
    path = badfiles.png(tmp_path / "p.png", width=100, height=100)
    with pytest.raises(InvalidImage, match=r"too many pixels: 100x100 > 9999"):
        verify_image(path, max_pixels=9999)
    assert verify_image(path, max_pixels=10_000).width == 100


def test_pillow_bomb_warning_is_a_rejection_not_a_warning(tmp_path: Path) -> None:
    # Above Pillow's own warning threshold (~89.5 Mpx) but below its error threshold, with
    # our cap set higher still: Pillow's warning must turn into a rejection.
    path = badfiles.png_header_bomb(tmp_path / "b.png", width=10000, height=9000)
    with pytest.raises(InvalidImage, match="too many pixels"):
        verify_image(path, max_pixels=200_000_000)


def test_oversize_file_is_rejected(tmp_path: Path) -> None:
    path = badfiles.oversize(tmp_path / "big.png", 50_000)
    assert verify_image(path, max_pixels=MAX_PIXELS).format == "png"  # the file itself is fine
    with pytest.raises(InvalidImage, match=r"too large: \d+ bytes > 50000"):
        verify_image(path, max_pixels=MAX_PIXELS, max_bytes=50_000)


@pytest.mark.parametrize(
    ("declared", "reason"),
    [
        ("image/jpeg", "mislabelled: header says image/jpeg, bytes are PNG"),
        ("image/webp", "mislabelled: header says image/webp, bytes are PNG"),
        ("text/html; charset=utf-8", "mislabelled: header says text/html, bytes are PNG"),
        ("image/svg+xml", "mislabelled: header says image/svg+xml, bytes are PNG"),
    ],
)
def test_rejects_mislabelled(tmp_path: Path, declared: str, reason: str) -> None:
    path = badfiles.png(tmp_path / "p.png")
    with pytest.raises(InvalidImage) as excinfo:
        verify_image(path, max_pixels=MAX_PIXELS, declared_content_type=declared)
    assert excinfo.value.reason == reason


@pytest.mark.parametrize(
    "declared",
    [None, "", "application/octet-stream", "binary/octet-stream", "IMAGE/PNG", "image/x-png"],
)
def test_accepts_consistent_or_absent_labels(tmp_path: Path, declared: str | None) -> None:
    path = badfiles.png(tmp_path / "p.png")
    info = verify_image(path, max_pixels=MAX_PIXELS, declared_content_type=declared)
    assert info.format == "png"


def test_jpg_alias_matches_jpeg(tmp_path: Path) -> None:
    path = badfiles.jpeg(tmp_path / "j")
    assert verify_image(path, max_pixels=MAX_PIXELS, declared_content_type="image/jpg").extension
    assert verify_image(path, max_pixels=MAX_PIXELS).extension == "jpg"


def test_refuses_to_run_when_truncated_images_are_tolerated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pillow's global switch would make truncated files pass; verification must not lie.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    path = badfiles.truncated(tmp_path / "t.png", "PNG")
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        verify_image(path, max_pixels=MAX_PIXELS)


def test_message_carries_the_reason(tmp_path: Path) -> None:
    path = badfiles.html_error_page(tmp_path / "e")
    with pytest.raises(InvalidImage) as excinfo:
        verify_image(path, max_pixels=MAX_PIXELS)
    assert str(excinfo.value) == "invalid image: not a PNG, JPEG or WebP (looks like HTML)"
