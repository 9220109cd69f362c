from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from service.archive.base64_images import CHUNK_CHARS, decode_base64_file, write_data_uri
from service.archive.image_checks import verify_image
from service.errors import PermanentError
from tests.support import badfiles

PNG = badfiles.image_bytes("PNG", 40, 30)
PNG_B64 = base64.b64encode(PNG).decode()
MAX = 10 * 1024 * 1024


def _no_partials(directory: Path) -> bool:
    return not list(directory.glob("*.part"))


def test_data_uri_is_decoded_to_the_image(tmp_path: Path) -> None:
    dest = tmp_path / "out.png"
    size, sha = write_data_uri(f"data:image/png;base64,{PNG_B64}", dest, MAX)
    assert dest.read_bytes() == PNG
    assert (size, sha) == (len(PNG), hashlib.sha256(PNG).hexdigest())
    assert verify_image(dest, max_pixels=10_000).width == 40


def test_data_uri_with_parameters_and_upper_case(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    write_data_uri(f"DATA:Image/PNG;name=x.png;BASE64,{PNG_B64}", dest, MAX)
    assert dest.read_bytes() == PNG


@pytest.mark.parametrize(
    "uri",
    [
        f"data:text/html;base64,{PNG_B64}",
        f"data:;base64,{PNG_B64}",
        "data:image/png,%89PNG%0D%0A",
        f"data:image/svg+xml;utf8,{PNG_B64}",
        f"https://example.com/{PNG_B64}",
        "data:image/png;base64",
    ],
    ids=["html", "no-type", "not-base64", "svg-utf8", "not-data", "no-comma"],
)
def test_data_uri_refusals_are_invalid_input(tmp_path: Path, uri: str) -> None:
    dest = tmp_path / "out"
    with pytest.raises(PermanentError) as excinfo:
        write_data_uri(uri, dest, MAX)
    assert excinfo.value.code == "invalid_input"
    assert not dest.exists()


@pytest.mark.parametrize("data", ["iVBO!!!!", "iVBORw0KGgo\u00e9AAA", "iVBORw0KG"])
def test_data_uri_with_bad_base64_is_an_invalid_image(tmp_path: Path, data: str) -> None:
    dest = tmp_path / "out"
    with pytest.raises(PermanentError) as excinfo:
        write_data_uri(f"data:image/png;base64,{data}", dest, MAX)
    assert excinfo.value.code == "invalid_image"
    assert not dest.exists()
    assert _no_partials(tmp_path)


def test_data_uri_over_the_cap(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with pytest.raises(PermanentError) as excinfo:
        write_data_uri(f"data:image/png;base64,{PNG_B64}", dest, len(PNG) - 1)
    assert excinfo.value.code == "download_too_large"
    assert not dest.exists()
    assert _no_partials(tmp_path)


def _wrapped(text: str, width: int = 76) -> str:
    return "\n".join(text[i : i + width] for i in range(0, len(text), width)) + "\n"


@pytest.mark.parametrize(
    "content",
    [
        PNG_B64,
        _wrapped(PNG_B64),
        f"  data:image/png;base64,{PNG_B64}\r\n",
        "data:image/png;base64," + _wrapped(PNG_B64, 61),
        " \t".join(PNG_B64[i : i + 5] for i in range(0, len(PNG_B64), 5)),
    ],
    ids=["plain", "wrapped", "data-prefix", "prefix-wrapped", "spaced"],
)
def test_base64_file_variants_decode_to_the_image(tmp_path: Path, content: str) -> None:
    src = tmp_path / "0.base64"
    src.write_text(content)
    dest = tmp_path / "0.png"
    size, sha = decode_base64_file(src, dest, MAX)
    assert dest.read_bytes() == PNG
    assert (size, sha) == (len(PNG), hashlib.sha256(PNG).hexdigest())


@pytest.mark.parametrize("payload", [b"h", b"hi", b"hey"])
def test_missing_padding_is_restored(tmp_path: Path, payload: bytes) -> None:
    src = tmp_path / "x.base64"
    src.write_text(base64.b64encode(payload).decode().rstrip("="))
    dest = tmp_path / "x.bin"
    assert decode_base64_file(src, dest, MAX)[0] == len(payload)
    assert dest.read_bytes() == payload


def test_large_base64_file_streams_across_chunk_boundaries(tmp_path: Path) -> None:
    # Odd line width so quanta straddle every chunk boundary.
    payload = bytes(range(256)) * 2000  # 512000 bytes, several decoder chunks
    src = tmp_path / "big.base64"
    src.write_text(_wrapped(base64.b64encode(payload).decode(), 61))
    assert src.stat().st_size > 5 * CHUNK_CHARS
    dest = tmp_path / "big.bin"
    size, sha = decode_base64_file(src, dest, MAX)
    assert size == len(payload)
    assert sha == hashlib.sha256(payload).hexdigest()


@pytest.mark.parametrize(
    "content",
    [
        "iVBORw0KGgo!!!!",
        "<!DOCTYPE html><html>Not Found</html>",
        PNG_B64[:-3] + "=" + PNG_B64[-3:],  # padding in the middle
        "aGk=aGk=",  # two padded blobs: data after padding
        "iVBORw0KG",  # one character past a whole quantum
        "",
        "data:text/plain;base64," + PNG_B64,
        "data:image/png," + PNG_B64,
    ],
    ids=["bad-char", "html", "mid-padding", "after-padding", "bad-length", "empty", "text", "raw"],
)
def test_invalid_base64_files_are_invalid_images(tmp_path: Path, content: str) -> None:
    src = tmp_path / "x.base64"
    src.write_text(content)
    dest = tmp_path / "x.png"
    with pytest.raises(PermanentError) as excinfo:
        decode_base64_file(src, dest, MAX)
    assert excinfo.value.code == "invalid_image"
    assert not dest.exists()
    assert _no_partials(tmp_path)


def test_base64_file_cap_applies_to_decoded_bytes(tmp_path: Path) -> None:
    src = tmp_path / "x.base64"
    src.write_text(PNG_B64)
    assert decode_base64_file(src, tmp_path / "ok.png", len(PNG))[0] == len(PNG)
    dest = tmp_path / "over.png"
    with pytest.raises(PermanentError) as excinfo:
        decode_base64_file(src, dest, len(PNG) - 1)
    assert excinfo.value.code == "download_too_large"
    assert not dest.exists()
    assert _no_partials(tmp_path)


def test_cap_stops_decoding_early(tmp_path: Path) -> None:
    # A 4 MiB text file decoding to 3 MiB must stop at the first chunk over a 100 KiB cap;
    # the error comes from the cap, not from anything later in the file.
    src = tmp_path / "huge.base64"
    with src.open("w") as f:
        f.write(base64.b64encode(b"\x00" * 3 * 1024 * 1024).decode())
        f.write("!!!! not base64 at the end")
    with pytest.raises(PermanentError) as excinfo:
        decode_base64_file(src, tmp_path / "x", 100 * 1024)
    assert excinfo.value.code == "download_too_large"
