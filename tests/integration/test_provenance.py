"""C2PA Content Credentials: read when an output is archived, recorded, shown.

The images are signed here, with c2pa's own Builder and a certificate authority made for the
session (a root, and under it an ES256 signing certificate with the profile C2PA asks of
one: digitalSignature, emailProtection, not a CA), so nothing depends on a vendor's files.
"""

from __future__ import annotations

import datetime
import io
import ipaddress
import json
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import c2pa
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image, PngImagePlugin
from sqlalchemy import select

from service.app import create_app
from service.archive.provenance import read_credentials
from service.db.migrate import upgrade
from service.db.models import Asset
from service.jobs.records import get_job
from service.jobs.submission import create_job
from service.sandbox.server import start_in_thread
from service.wiring import Container, build
from tests.support.app import AUTH, TOKEN, apply_callbacks, make_settings
from tests.support.fileserver import FileServer

GENERATED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
NOTHING = {"present": False, "valid": None, "claim_generator": None, "digital_source_type": None}


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "genvault tests"),
        ]
    )


def _usage(*, sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not sign,
        crl_sign=not sign,
        encipher_only=False,
        decipher_only=False,
    )


@pytest.fixture(scope="session")
def signing_ca() -> tuple[bytes, bytes]:
    """A test CA's signing certificate chain (leaf first) and the leaf's key, both PEM."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def cert(subject: str, public: Any, issuer: x509.Name, *, ca: bool) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), True)
            .add_extension(_usage(sign=not ca), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        )

    root = cert("genvault test root", ca_key.public_key(), _name("genvault test root"), ca=True)
    root_cert = root.sign(ca_key, hashes.SHA256())
    leaf = (
        cert("genvault test signer", key.public_key(), root_cert.subject, ca=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    chain = leaf.public_bytes(pem) + root_cert.public_bytes(pem)
    private = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return chain, private


def _sign(
    signing_ca: tuple[bytes, bytes], image: bytes, mime: str, *, remote_url: str | None = None
) -> bytes:
    chain, private = signing_ca
    definition = {
        "claim_generator_info": [{"name": "genvault-tests", "version": "1.0"}],
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": GENERATED}]},
            }
        ],
    }
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, private, None)
    with c2pa.Signer.from_info(info) as signer, c2pa.Builder(definition) as builder:
        if remote_url:
            builder.set_no_embed()
            builder.set_remote_url(remote_url)
        out = io.BytesIO()
        builder.sign(signer, mime, io.BytesIO(image), out)
    return out.getvalue()


def _image(fmt: str, text: str | None = None) -> bytes:
    img = Image.new("RGB", (48, 32), (30, 120, 200))
    for x in range(0, 48, 3):
        img.putpixel((x, x % 32), (x * 5, 255 - x * 5, 17))
    buf = io.BytesIO()
    if text is None:
        img.save(buf, format=fmt)
    else:  # a tEXt chunk: a byte of the file that is not a pixel, to alter cleanly
        meta = PngImagePlugin.PngInfo()
        meta.add_text("Comment", text)
        img.save(buf, format=fmt, pnginfo=meta)
    return buf.getvalue()


@pytest.fixture(scope="session")
def signed_png(signing_ca: tuple[bytes, bytes]) -> bytes:
    return _sign(signing_ca, _image("PNG", text="made by a model"), "image/png")


def _flip_in_idat(png: bytes) -> bytes:
    data = bytearray(png)
    data[png.index(b"IDAT") + 8] ^= 0xFF
    return bytes(data)


def _altered_text(png: bytes) -> bytes:
    """The PNG with one letter of its tEXt chunk changed and the chunk's CRC made right again.

    Still a valid PNG (so genvault's checks archive it), but not the bytes that were signed.
    """
    start = png.index(b"tEXt") - 4
    (length,) = struct.unpack(">I", png[start : start + 4])
    body = png[start + 4 : start + 8 + length].replace(b"model", b"morel")
    chunk = png[start : start + 4] + body + struct.pack(">I", zlib.crc32(body))
    return png[:start] + chunk + png[start + 12 + length :]


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_signed_credentials_are_present_valid_and_described(
    signed_png: bytes, tmp_path: Path
) -> None:
    record = read_credentials(_write(tmp_path, "a.png", signed_png), "image/png")
    # The test CA is on no trust list: c2pa says signingCredential.untrusted, still valid.
    assert record == {
        "present": True,
        "valid": True,
        "claim_generator": "genvault-tests/1.0",
        "digital_source_type": GENERATED,
    }


def test_a_signed_jpeg_reads_the_same(signing_ca: tuple[bytes, bytes], tmp_path: Path) -> None:
    jpeg = _sign(signing_ca, _image("JPEG"), "image/jpeg")
    record = read_credentials(_write(tmp_path, "a.jpg", jpeg), "image/jpeg")
    assert record["present"] is True and record["valid"] is True
    assert record["digital_source_type"] == GENERATED


@pytest.mark.parametrize("alter", [_flip_in_idat, _altered_text])
def test_a_byte_changed_after_signing_is_invalid(
    signed_png: bytes, tmp_path: Path, alter: Any
) -> None:
    record = read_credentials(_write(tmp_path, "a.png", alter(signed_png)), "image/png")
    assert record["present"] is True
    assert record["valid"] is False  # assertion.dataHash.mismatch
    assert record["claim_generator"] == "genvault-tests/1.0"


@pytest.mark.parametrize(("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_an_image_without_credentials_records_nothing(tmp_path: Path, fmt: str, mime: str) -> None:
    assert read_credentials(_write(tmp_path, "a", _image(fmt)), mime) == NOTHING


def test_a_remote_manifest_is_present_unchecked_and_never_fetched(
    signing_ca: tuple[bytes, bytes], fileserver: FileServer, tmp_path: Path
) -> None:
    url = fileserver.put("/manifest.c2pa", b"", "application/c2pa")
    image = _sign(signing_ca, _image("PNG"), "image/png", remote_url=url)
    record = read_credentials(_write(tmp_path, "a.png", image), "image/png")
    assert record == {**NOTHING, "present": True}
    assert fileserver.hits == {}


def test_a_reader_error_is_recorded_never_raised(
    signed_png: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Cut inside the manifest store: c2pa cannot parse the file, yet it holds credentials.
    cut = signed_png[: signed_png.index(b"jumd") + 200]
    with caplog.at_level("INFO", logger="service.archive.provenance"):
        record = read_credentials(_write(tmp_path, "a.png", cut), "image/png")
    assert record == {**NOTHING, "present": True}
    assert "content credentials not read" in caplog.text
    assert read_credentials(_write(tmp_path, "b.png", b"\x89PNG\r\n\x1a\n"), "image/png") == (
        NOTHING
    )


# End to end: the sandbox provider "generates" the images a loopback file server holds.


@pytest.fixture
def container(database_url: str, tmp_path: Path) -> Iterator[Container]:
    server, _ = start_in_thread("127.0.0.1", 0)
    settings = make_settings(
        database_url,
        tmp_path,
        modelslab_base_url=f"{server.url}/api",
        download_allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),),
        download_allowed_hosts=("127.0.0.1",),
        retry_base_seconds=0.01,
    )
    c = build(settings)
    upgrade(c.db.engine)
    try:
        yield c
    finally:
        c.close()
        server.shutdown()


def _archived(c: Container, outputs: list[str]) -> Any:
    job, _ = create_job(
        c.db,
        c.queue,
        endpoint="modelslab/text2img",
        params={"model_id": "m", "prompt": "[sandbox:processing,eta=600,webhook-never] x"},
        metadata={},
    )
    worker = c.worker()
    worker.run_once()  # the submit task
    with c.db.transaction() as s:
        job = get_job(s, job.id)
    body = {
        "status": "success",
        "id": job.provider_request_id,
        "output": outputs,
        "track_id": job.track_id,
    }
    c.receiver.receive("modelslab", job.track_id, json.dumps(body).encode())
    apply_callbacks(c)
    for _ in range(5):
        if not worker.run_once():
            break
    with c.db.transaction() as s:
        return get_job(s, job.id)


def test_archiving_records_credentials_in_the_manifest_rows_api_and_job_page(
    container: Container, fileserver: FileServer, signed_png: bytes
) -> None:
    urls = [
        fileserver.put("/signed.png", signed_png),
        fileserver.put("/plain.png", _image("PNG")),
        fileserver.put("/altered.png", _altered_text(signed_png)),
    ]
    job = _archived(container, urls)
    assert job.status == "archived", (job.status, job.error_code, job.error_message)
    signed = {
        "present": True,
        "valid": True,
        "claim_generator": "genvault-tests/1.0",
        "digital_source_type": GENERATED,
    }
    expected = [signed, NOTHING, {**signed, "valid": False}]

    with container.store.open(job.manifest_key) as stream:
        manifest = json.load(stream)
    assert [a["content_credentials"] for a in manifest["assets"]] == expected
    with container.db.transaction() as s:
        rows = s.execute(
            select(Asset).where(Asset.job_id == job.id).order_by(Asset.role, Asset.index)
        ).scalars()
        assert [a.content_credentials for a in rows if a.role == "output"] == expected

    client = create_app(container=container).test_client()
    answer = client.get(f"/v1/jobs/{job.id}", headers=AUTH).get_json()
    assert [a["content_credentials"] for a in answer["assets"]] == expected
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/ui/login").text)
    assert token
    client.post("/ui/login", data={"token": TOKEN, "csrf_token": token.group(1)})
    page = client.get(f"/ui/jobs/{job.id}").get_data(as_text=True)
    shown = re.findall(r'data-index="(\d+)" data-content-credentials="([a-z]+)"', page)
    assert shown == [("0", "valid"), ("1", "none"), ("2", "invalid")]
    assert "genvault-tests/1.0" in page and GENERATED in page
