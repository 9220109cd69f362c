"""Thumbnails made at archive time: WebP beside the outputs, listed as derived, never fatal."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from service.archive.audit import asset_rows, audit_job
from service.db.migrate import upgrade
from service.jobs.records import get_job
from service.jobs.submission import create_job
from service.sandbox.server import start_in_thread
from service.storage.base import ObjectMissing
from service.wiring import Container, build
from tests.support import badfiles
from tests.support.app import make_settings
from tests.support.fileserver import FileServer


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Container]:
    server, _ = start_in_thread("127.0.0.1", 0)
    settings = make_settings(
        f"sqlite:///{tmp_path / 'genvault.db'}",
        tmp_path,
        modelslab_base_url=f"{server.url}/api",
        download_allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),),
        download_allowed_hosts=("127.0.0.1",),
    )
    c = build(settings)
    upgrade(c.db.engine)
    try:
        yield c
    finally:
        c.close()
        server.shutdown()


def _archive(c: Container, outputs: list[str]) -> Any:
    job, _ = create_job(
        c.db,
        c.queue,
        endpoint="modelslab/text2img",
        params={"model_id": "m", "prompt": "[sandbox:processing,eta=600,webhook-never] fox"},
        metadata={},
    )
    worker = c.worker()
    worker.run_once()  # submit
    with c.db.transaction() as s:
        job = get_job(s, job.id)
    body = {"status": "success", "id": job.provider_request_id, "output": outputs}
    c.receiver.receive("modelslab", job.track_id, json.dumps(body).encode())
    for _ in range(5):
        if not worker.run_once():
            break
    with c.db.transaction() as s:
        return get_job(s, job.id)


def test_each_output_gets_a_webp_thumbnail_listed_as_derived(
    vault: Container, fileserver: FileServer
) -> None:
    urls = [
        fileserver.put("/a.png", badfiles.image_bytes("PNG", 1024, 512)),
        fileserver.put("/b.jpg", badfiles.image_bytes("JPEG", 300, 600), "image/jpeg"),
    ]
    job = _archive(vault, urls)
    assert job.status == "archived"
    with vault.store.open(job.manifest_key) as stream:
        manifest = json.loads(stream.read())
    derived = manifest["derived"]
    assert [d["of"]["index"] for d in derived] == [0, 1]
    # Thumbnails are not outputs: the outputs list is exactly the provider's images.
    assert [a["key"].rsplit("/", 1)[1] for a in manifest["assets"]] == ["0.png", "1.jpg"]
    sizes = []
    for entry in derived:
        assert entry["key"].endswith(f"/thumbs/{entry['of']['index']}.webp")
        assert entry["key"].startswith(job.manifest_key.rsplit("/", 1)[0] + "/")
        with vault.store.open(entry["key"]) as stream:
            data = stream.read()
        assert len(data) == entry["size"]
        with Image.open(BytesIO(data)) as image:
            assert image.format == "WEBP"
            sizes.append(image.size)
    assert sizes == [(256, 128), (128, 256)]
    # The audit counts derived objects as listed (and checks them), so it finds no problem.
    report = audit_job(
        vault.store, job, asset_rows(vault.db, job.id), vault.archiver.signer.verifier
    )
    assert report.ok, report.as_json()
    assert report.checked == 4


def test_an_output_too_large_to_decode_whole_gets_its_thumbnail_from_the_file(
    vault: Container, fileserver: FileServer
) -> None:
    # 4000x3000 RGB decodes to 36 MB, past verification's in-memory budget: it is checked
    # streaming, so the thumbnail cannot come from its pixels and is rendered from the file.
    buf = BytesIO()
    Image.new("RGB", (4000, 3000), (0, 90, 200)).save(buf, "PNG", compress_level=1)
    job = _archive(vault, [fileserver.put("/large.png", buf.getvalue())])
    assert job.status == "archived"
    with vault.store.open(job.manifest_key) as stream:
        (entry,) = json.loads(stream.read())["derived"]
    assert (entry["width"], entry["height"]) == (256, 192)
    with vault.store.open(entry["key"]) as stream, Image.open(stream) as thumb:
        assert thumb.convert("RGB").getpixel((128, 96)) == pytest.approx((0, 90, 200), abs=3)


def test_an_output_past_the_thumbnail_pixel_cap_is_archived_without_one(
    vault: Container,
    fileserver: FileServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The cap keeps a huge PNG's decode (its whole size in memory) out of the worker; the
    # 4000x3000 file of the test above stands in for one, under a lowered cap.
    from service.archive import thumbnails

    monkeypatch.setattr(vault.archiver.thumbnailer, "max_pixels", 4000 * 3000 - 1)
    caplog.set_level("INFO", logger="service.archive.thumbnails")
    buf = BytesIO()
    Image.new("RGB", (4000, 3000), (0, 90, 200)).save(buf, "PNG", compress_level=1)
    job = _archive(vault, [fileserver.put("/large.png", buf.getvalue())])
    assert job.status == "archived"
    with vault.store.open(job.manifest_key) as stream:
        manifest = json.loads(stream.read())
    assert manifest["derived"] == [] and len(manifest["assets"]) == 1
    said = [r for r in caplog.records if r.name == thumbnails.__name__]
    assert [(r.levelname, r.getMessage()) for r in said] == [
        ("INFO", "no thumbnail: 4000x3000 is too large to thumbnail")
    ]
    assert thumbnails.Thumbnailer(vault.db, vault.store, max_pixels=10**9).max_pixels == (
        thumbnails.MAX_SOURCE_PIXELS
    ), "the cap holds whatever the archive accepts"


def test_a_thumbnail_that_fails_does_not_fail_the_archive(
    vault: Container, fileserver: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.archive import thumbnails

    def broken(*_args: Any, **_kw: Any) -> thumbnails.Preview:
        raise OSError("disk full while encoding")

    # The vendor border (Pillow's encoder) fails, whether the thumbnail is made from the
    # pixels verification decoded or from the file; our own pipeline runs for real.
    monkeypatch.setattr(thumbnails, "render_image", broken)
    job = _archive(vault, [fileserver.put("/a.png", badfiles.image_bytes("PNG", 64, 64))])
    assert job.status == "archived"
    with vault.store.open(job.manifest_key) as stream:
        manifest = json.loads(stream.read())
    assert manifest["derived"] == []
    assert len(manifest["assets"]) == 1
    with pytest.raises(ObjectMissing):
        vault.store.head(job.manifest_key.replace("manifest.json", "thumbs/0.webp"))
    assert audit_job(
        vault.store, job, asset_rows(vault.db, job.id), vault.archiver.signer.verifier
    ).ok


def test_the_gallery_links_thumbnails_stably_and_they_are_cacheable(
    vault: Container, fileserver: FileServer
) -> None:
    import re
    from urllib.parse import urlsplit

    from service.app import create_app
    from tests.support.app import TOKEN

    job = _archive(vault, [fileserver.put("/a.png", badfiles.image_bytes("PNG", 640, 480))])
    client = create_app(container=vault).test_client()
    login = client.get("/ui/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login)
    assert csrf
    client.post("/ui/login", data={"token": TOKEN, "csrf_token": csrf.group(1)})
    first = client.get("/ui/").get_data(as_text=True)
    links = re.findall(r'<img src="([^"]+)"', first)
    assert len(links) == 1 and "/thumbs/0.webp" in links[0] and job.id in links[0]
    # The same link on the next render, so the browser's cache is used.
    assert re.findall(r'<img src="([^"]+)"', client.get("/ui/").get_data(as_text=True)) == links
    url = urlsplit(links[0].replace("&amp;", "&"))
    got = client.get(f"{url.path}?{url.query}")
    assert got.status_code == 200 and got.mimetype == "image/webp"
    cache = got.headers["Cache-Control"]
    assert cache.startswith("private, max-age=") and cache.endswith("immutable")
    assert int(cache.split("max-age=")[1].split(",")[0]) >= vault.settings.presign_expires_seconds
    with Image.open(BytesIO(got.data)) as image:
        assert image.size == (256, 192)
