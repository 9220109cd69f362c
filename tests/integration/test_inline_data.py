"""Inline data summarised: data: inputs archived at acceptance, b64_json out of callbacks.

A data: URI must appear in job rows, callbacks, manifests and logs only as a summary (media
type, size, sha256, archived key), while the provider still receives the image (as a link).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
from typing import Any

from PIL import Image
from sqlalchemy import select

from service.app import create_app
from service.db.models import Asset, Callback, Job, Task
from service.jobs.records import get_job
from service.logs import JsonFormatter
from service.wiring import Container
from tests.integration.test_archive import _deliver, _settle, make, sandbox  # noqa: F401
from tests.support import badfiles
from tests.support.app import AUTH
from tests.support.fileserver import FileServer

IMG2IMG = "modelslab/img2img"


def _noise_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buffer, "PNG")
    return buffer.getvalue()


def _everything_stored(c: Container, job_id: str) -> str:
    """Every row the database keeps about a job, as one text."""
    with c.db.transaction() as s:
        rows: list[Any] = [s.get(Job, job_id)]
        for table in (Callback, Asset, Task):
            rows += list(s.execute(select(table).where(table.job_id == job_id)).scalars())
        return json.dumps(
            [{k: v for k, v in vars(r).items() if not k.startswith("_")} for r in rows],
            default=str,
        )


def test_a_data_uri_input_is_archived_at_acceptance_and_kept_only_as_a_summary(
    make: Any,  # noqa: F811
    fileserver: FileServer,
) -> None:
    c = make()
    image = _noise_png(160, 120)
    payload = base64.b64encode(image).decode()
    params = {
        "model_id": "flux-kontext-dev",
        "prompt": "[sandbox:processing,eta=600,webhook-never] inline",
        "init_image": f"data:image/png;base64,{payload}",
    }
    client = create_app(container=c).test_client()
    answer = client.post("/v1/jobs", json={"endpoint": IMG2IMG, "params": params}, headers=AUTH)
    assert answer.status_code == 202, answer.get_json()
    job_id = answer.get_json()["id"]

    with c.db.transaction() as s:
        summary = get_job(s, job_id).params["init_image"]
    assert summary["media_type"] == "image/png" and summary["size"] == len(image)
    assert summary["sha256"] == hashlib.sha256(image).hexdigest()
    key = summary["archived_as"]
    assert key.endswith("/inputs/0.png")
    with c.store.open(key) as stream:
        assert stream.read() == image  # archived before the job row existed

    worker = c.worker()
    worker.run_once()  # submit: the provider gets a link to the stored input
    with c.db.transaction() as s:
        job = get_job(s, job_id)
        [submitted] = s.execute(select(Callback).where(Callback.job_id == job_id)).scalars()
    sent = submitted.body["meta"]["init_image"]
    assert (
        isinstance(sent, str) and sent.startswith("http") and "/files/" in sent
    ) or "vault" in sent

    _deliver(c, job, [fileserver.put("/o.png", badfiles.image_bytes("png", 16, 16))])
    done = _settle(c, worker, job_id)
    assert done.status == "archived"
    with c.store.open(done.manifest_key) as stream:
        manifest = json.loads(stream.read())
    assert manifest["request"]["params"]["init_image"]["archived_as"] == key
    assert manifest["inputs"][0]["key"] == key
    assert manifest["inputs"][0]["sha256"] == summary["sha256"]
    assert len(manifest["inputs"][0]["source_url"]) < 150

    stored = _everything_stored(c, job_id)
    assert payload[1000:1100] not in stored
    assert len(stored) < 20_000
    with c.store.open(done.manifest_key) as stream:
        assert payload[1000:1100].encode() not in stream.read()


def test_a_bad_inline_image_is_refused_with_422_and_nothing_is_kept(make: Any) -> None:  # noqa: F811
    c = make()
    not_an_image = base64.b64encode(b"plain text, base64 but no image" * 10).decode()
    params = {
        "model_id": "flux-kontext-dev",
        "prompt": "p",
        "init_image": f"data:image/png;base64,{not_an_image}",
    }
    client = create_app(container=c).test_client()
    answer = client.post("/v1/jobs", json={"endpoint": IMG2IMG, "params": params}, headers=AUTH)
    assert answer.status_code == 422
    assert [e["field"] for e in answer.get_json()["error"]["errors"]] == ["params.init_image"]
    with c.db.transaction() as s:
        assert s.execute(select(Job)).first() is None


def test_b64_json_outputs_are_archived_and_leave_the_callbacks_table(
    make: Any,  # noqa: F811
    sandbox: str,  # noqa: F811
) -> None:
    c = make(aimlapi_base_url=f"{sandbox}/aimlapi")
    client = create_app(container=c).test_client()
    answer = client.post(
        "/v1/jobs",
        json={
            "endpoint": "aimlapi/images/generations",
            "params": {
                "model": "flux/kontext-pro/image-to-image",
                "prompt": "inline out [sandbox:b64]",
                "image_url": "https://cdn.aimlapi.com/x.png",
            },
        },
        headers=AUTH,
    )
    assert answer.status_code == 202, answer.get_json()
    job_id = answer.get_json()["id"]
    done = _settle(c, c.worker(), job_id)
    assert done.status == "archived", (done.error_code, done.error_message)
    with c.db.transaction() as s:
        [output] = [
            a
            for a in s.execute(select(Asset).where(Asset.job_id == job_id)).scalars()
            if a.role == "output"
        ]
        callbacks = list(s.execute(select(Callback).where(Callback.job_id == job_id)).scalars())
    assert output.key and output.size > 0
    text = json.dumps([[cb.body, cb.result] for cb in callbacks], ensure_ascii=False)
    assert "base64," not in text.replace("base64,…", "")
    assert output.sha256 in text  # the summary names what was archived
    assert len(text) < 10_000


def test_logs_summarise_inline_data_in_messages_and_context() -> None:
    payload = base64.b64encode(_noise_png(64, 64)).decode()
    uri = f"data:image/png;base64,{payload}"
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "got %s", (uri,), None)
    record.params = {"init_image": uri, "b64_json": payload, "key": "sk-secret"}
    line = JsonFormatter().format(record)
    assert payload[100:200] not in line and "sk-secret" not in line
    parsed = json.loads(line)
    assert parsed["params"]["init_image"]["sha256"] == parsed["params"]["b64_json"]["sha256"]
    assert "bytes, sha256" in parsed["msg"]
