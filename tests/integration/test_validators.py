"""The outside validators' wrappers can fail: a hand-built OCFL 1.1 object, then broken.

The object is written here by hand, to the letter of the OCFL 1.1 specification, with no
genvault code: its namaste file, an inventory with sha512 digests (and a sha256 fixity
block) and its sidecar at the root and in v1/, one content file. ocfl-py passes it, and
fails it after a flipped byte in its content and when the root inventory is missing; on the
file system and on moto's S3 server. Bags: see test_export_bag.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import boto3
import pytest

from tests.support.validators import validate_bag, validate_ocfl_object

CONTENT = b"a lighthouse at dusk\n" * 64


def _object_files() -> dict[str, bytes]:
    """Every file of a minimal valid OCFL 1.1 object, by path relative to its root."""
    sha512 = hashlib.sha512(CONTENT).hexdigest()
    inventory = {
        "id": "urn:genvault:test:hand-built",
        "type": "https://ocfl.io/1.1/spec/#inventory",
        "digestAlgorithm": "sha512",
        "head": "v1",
        "contentDirectory": "content",
        "manifest": {sha512: ["v1/content/lighthouse.txt"]},
        "versions": {
            "v1": {
                "created": "2026-01-02T03:04:05Z",
                "message": "written by hand",
                "user": {"name": "genvault tests", "address": "mailto:tests@example.com"},
                "state": {sha512: ["lighthouse.txt"]},
            }
        },
        "fixity": {"sha256": {hashlib.sha256(CONTENT).hexdigest(): ["v1/content/lighthouse.txt"]}},
    }
    body = json.dumps(inventory, indent=2).encode()
    sidecar = f"{hashlib.sha512(body).hexdigest()}  inventory.json\n".encode()
    return {
        "0=ocfl_object_1.1": b"ocfl_object_1.1\n",
        "inventory.json": body,
        "inventory.json.sha512": sidecar,
        "v1/inventory.json": body,
        "v1/inventory.json.sha512": sidecar,
        "v1/content/lighthouse.txt": CONTENT,
    }


def _flip(data: bytes) -> bytes:
    return data[:10] + bytes([data[10] ^ 0x01]) + data[11:]


def _write(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@pytest.mark.damages_archive
def test_a_hand_built_object_passes_and_each_breakage_fails(tmp_path: Path) -> None:
    files = _object_files()
    good = validate_ocfl_object(str(_write(tmp_path / "good", files)))
    assert good.returncode == 0, good.stdout + good.stderr

    flipped = _write(tmp_path / "flipped", files)
    content = flipped / "v1/content/lighthouse.txt"
    content.write_bytes(_flip(content.read_bytes()))
    bad = validate_ocfl_object(str(flipped))
    assert bad.returncode != 0, bad.stdout
    assert "INVALID" in bad.stdout

    missing = _write(tmp_path / "missing", files)
    (missing / "inventory.json").unlink()
    bad = validate_ocfl_object(str(missing))
    assert bad.returncode != 0, bad.stdout
    assert "INVALID" in bad.stdout


@pytest.mark.damages_archive
def test_a_storage_root_is_refused_rather_than_passed(tmp_path: Path) -> None:
    """ocfl-py exits 0 on a storage root whatever its objects hold: never taken as a pass."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "0=ocfl_1.1").write_bytes(b"ocfl_1.1\n")
    files = _object_files()
    files["v1/content/lighthouse.txt"] = _flip(CONTENT)
    _write(root / "obj", files)
    done = validate_ocfl_object(str(root))
    assert done.returncode != 0
    assert "not validated as one OCFL object" in done.stderr


@pytest.mark.damages_archive
def test_the_same_object_on_moto_s3(s3_bucket: str) -> None:
    client = boto3.client("s3")
    prefix = "vault/obj"
    for rel, data in _object_files().items():
        client.put_object(Bucket=s3_bucket, Key=f"{prefix}/{rel}", Body=data)
    location = f"s3://{s3_bucket}/{prefix}"

    good = validate_ocfl_object(location)
    assert good.returncode == 0, good.stdout + good.stderr

    key = f"{prefix}/v1/content/lighthouse.txt"
    client.put_object(Bucket=s3_bucket, Key=key, Body=_flip(CONTENT))
    bad = validate_ocfl_object(location)
    assert bad.returncode != 0 and "INVALID" in bad.stdout, bad.stdout + bad.stderr

    client.put_object(Bucket=s3_bucket, Key=key, Body=CONTENT)
    assert validate_ocfl_object(location).returncode == 0
    client.delete_object(Bucket=s3_bucket, Key=f"{prefix}/inventory.json")
    bad = validate_ocfl_object(location)
    assert bad.returncode != 0 and "INVALID" in bad.stdout, bad.stdout + bad.stderr


@pytest.mark.parametrize("broken", [False, True])
def test_bagit_wrapper_passes_a_bag_and_fails_a_flipped_byte(tmp_path: Path, broken: bool) -> None:
    """A bag written by hand per RFC 8493 (export's own bags: test_export_bag.py)."""
    bag = tmp_path / "bag"
    payload = bag / "data" / "x.txt"
    payload.parent.mkdir(parents=True)
    payload.write_bytes(CONTENT)
    (bag / "bagit.txt").write_text("BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    (bag / "manifest-sha512.txt").write_text(f"{hashlib.sha512(CONTENT).hexdigest()}  data/x.txt\n")
    if broken:
        payload.write_bytes(_flip(CONTENT))
    done = validate_bag(bag)
    assert (done.returncode == 0) is not broken, done.stdout + done.stderr
