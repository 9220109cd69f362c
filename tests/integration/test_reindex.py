"""`genvault reindex`: the database file deleted, `migrate` and `reindex` as real processes,
and the API and the dashboard answer as they did before.

Jobs are archived through the real pipeline (sandbox provider, file server, moto's S3 server
or the file archive): OCFL objects in two projects with inputs and thumbnails, one NSFW job
quarantined, a job upgraded from a dated layout, jobs of the two dated layouts of earlier
releases, and an erased job. What cannot be trusted (a flipped byte, a forged tombstone) is
reported and left out, an erasure that stopped half-way stays an erasure, a second run
imports nothing, `--project` reads one project, and an interrupted run goes on.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from service.access.audit_log import Origin
from service.app import create_app
from service.archive import layout, pipeline, tombstone
from service.archive.audit import run_audit
from service.archive.reindex import reindex
from service.archive.upgrade import Upgrader
from service.config import NsfwPolicy
from service.db.migrate import upgrade
from service.db.models import Asset, Job
from service.db.session import Database, make_engine
from service.db.types import utcnow
from service.jobs.erasure import erase_job
from service.jobs.records import get_job
from service.jobs.submission import create_job
from service.storage.base import StorageUnavailable
from service.wiring import Container
from tests.integration.test_archive import _container, _deliver, _settle, sandbox
from tests.integration.test_archive_projects import _inline_png, _project
from tests.integration.test_ocfl import _read, _rewrite
from tests.integration.test_ui import _cards, _sign_in, _signature
from tests.support import badfiles
from tests.support.app import AUTH, run_cli
from tests.support.fileserver import FileServer

__all__ = ["sandbox"]  # the fixture, shared with test_archive


@pytest.fixture(params=["file", "s3"])
def archive_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}/vault"
    return f"file://{tmp_path / 'archive'}"


HERE = Origin.of(None, None)  # where the test's erasures come from


def _archive(
    c: Container,
    fileserver: FileServer,
    project: str = "default",
    *,
    outputs: int = 1,
    nsfw: bool = False,
    inputs: dict[str, str] | None = None,
) -> Any:
    """A job archived for real; ``inputs`` (init_image, …) make it img2img."""
    job, _ = create_job(
        c.db,
        c.queue,
        endpoint="modelslab/img2img" if inputs else "modelslab/text2img",
        params={
            "model_id": "flux-kontext-dev",
            "prompt": "[sandbox:processing,eta=600,webhook-never] a red fox",
            **(inputs or {}),
        },
        metadata={"order": f"o-{outputs}", "customer": project},
        project=project,
        accept_inline=c.inline_inputs.accept,
    )
    worker = c.worker()
    worker.run_once()  # submit: the sandbox says processing and never calls back
    with c.db.transaction() as s:
        job = get_job(s, job.id)
    urls = [
        fileserver.put(f"/{job.id}-{i}.png", badfiles.image_bytes("png", 20 + i, 20))
        for i in range(outputs)
    ]
    _deliver(c, job, urls, **({"nsfw_content_detected": True} if nsfw else {}))
    done = _settle(c, worker, job.id)
    assert done.status == "archived", done.error_message
    return done


def _in_layout(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Jobs archived from now on are written as an earlier release wrote them."""

    def where(_store: Any, job: Any, **_: Any) -> layout.JobLayout:
        return layout.JobLayout.of(job, root=True) if how == "root" else layout.JobLayout.dated(job)

    monkeypatch.setattr(pipeline, "job_layout", where)


def _answers(client: FlaskClient, ids: list[str]) -> dict[str, Any]:
    """What the API says of each job and of each project's list, links without their
    signature and expiry (those are per request)."""

    def plain(job: dict[str, Any]) -> dict[str, Any]:
        assets = [a | {"url": a["url"] and a["url"].split("?")[0]} for a in job["assets"]]
        return job | {"assets": assets}

    shown: dict[str, Any] = {}
    for job_id in ids:
        r = client.get(f"/v1/jobs/{job_id}", headers=AUTH)
        shown[job_id] = plain(r.get_json()) if r.status_code == 200 else r.status_code
    for project in ("default", "alpha"):
        r = client.get(f"/v1/jobs?project={project}", headers=AUTH)
        assert r.status_code == 200, r.get_json()
        shown[f"list:{project}"] = [plain(j) for j in r.get_json()["jobs"]]
    return shown


IMAGE = re.compile(r'<img[^>]* src="([^"?]+)')
SECTION = re.compile(r"<h2>([^<]+)</h2>\s*<pre>(.*?)</pre>", re.S)
DIGEST = re.compile(r'<dd id="manifest-sha256"[^>]*>(.*?)</dd>', re.S)


def _dashboard(client: FlaskClient, ids: list[str]) -> dict[str, Any]:
    """What the dashboard shows: each project's gallery (cards, previews), and each job
    page's signature and manifest digest checks, its parameters, metadata, provider's answer
    and manifest, and its images."""
    shown: dict[str, Any] = {}
    for project in ("default", "alpha"):
        page = client.get(f"/ui/?project={project}").get_data(as_text=True)
        shown[project] = (_cards(client, f"?project={project}"), IMAGE.findall(page))
    for job_id in ids:
        page = client.get(f"/ui/jobs/{job_id}").get_data(as_text=True)
        sections = dict(SECTION.findall(page))  # parameters, metadata, provider's answer, …
        digest = DIGEST.search(page)
        assert digest and "Provider's answer" in sections, page
        shown[job_id] = (_signature(page), digest.group(1), sections, IMAGE.findall(page))
    return shown


def _erased(shown: dict[str, Any], job_id: str) -> list[dict[str, Any]]:
    """The erased job wherever it is shown (then taken out), but for the NSFW flag, which
    its tombstone does not carry."""
    found = [shown.pop(job_id)]
    for name, jobs in shown.items():
        if name.startswith("list:"):
            found += [j for j in jobs if j["id"] == job_id]
            shown[name] = [j for j in jobs if j["id"] != job_id]
    return [{k: v for k, v in job.items() if k != "nsfw_content_detected"} for job in found]


def _cli(c: Container, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        c, *args, cwd=Path(c.settings.database_url.removeprefix("sqlite:///")).parent, timeout=300
    )


def _lose_the_database(c: Container) -> None:
    """Delete the SQLite file (and its journal), then `genvault migrate` a fresh one."""
    c.close()
    path = Path(c.settings.database_url.removeprefix("sqlite:///"))
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        (path.parent / name).unlink(missing_ok=True)
    migrated = _cli(c, "migrate")
    assert migrated.returncode == 0, migrated.stderr


def _flip_a_byte(c: Container, job: Any) -> tuple[str, str]:
    """One byte flipped in the job's first output (inventory and manifest left as they were);
    its object root and the image's key."""
    root = layout.parse(job.manifest_key).object_root  # type: ignore[union-attr]
    image = f"{root}/v1/content/0.png"
    data = bytearray(_read(c.store, image))
    data[len(data) // 2] ^= 0x01
    _rewrite(c, image, bytes(data))
    return str(root), image


@contextmanager
def _on_a_folder(tmp_path: Path, sandbox: str) -> Iterator[Container]:
    """A container archiving to a folder of the test's own, closed afterwards."""
    c = _container(tmp_path, "unused", sandbox, archive_url=f"file://{tmp_path / 'archive'}")
    try:
        yield c
    finally:
        c.close()


def _fresh_database(tmp_path: Path) -> Database:
    """An empty, migrated database beside the test's own, to reindex into."""
    fresh = Database(make_engine(f"sqlite:///{tmp_path / 'fresh.db'}"))
    upgrade(fresh.engine)
    return fresh


def _summary(run: subprocess.CompletedProcess[str]) -> str:
    return run.stderr.strip().splitlines()[-1]


def test_reindex_after_the_database_is_lost_gives_back_the_same_jobs(
    tmp_path: Path,
    sandbox: str,
    fileserver: FileServer,
    archive_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def container() -> Container:
        return _container(
            tmp_path, "unused", sandbox, archive_url=archive_url, nsfw_policy=NsfwPolicy.QUARANTINE
        )

    c = container()
    _project(c, "alpha")
    inputs = {"init_image": fileserver.put("/in.png", badfiles.image_bytes("png", 24, 24))}
    jobs = [
        # An input given inline (archived at acceptance), one fetched; two thumbnails.
        _archive(c, fileserver, outputs=2, inputs={"init_image_2": _inline_png(), **inputs}),
        _archive(c, fileserver, "alpha"),
        _archive(c, fileserver, nsfw=True),  # quarantined, no thumbnail
    ]
    with monkeypatch.context() as patched:
        _in_layout(patched, "dated")
        upgraded = _archive(c, fileserver, "alpha", inputs=inputs)
        # Upgraded to an object, its dated directory left: reindex takes the object.
        assert Upgrader(c.db, c.store, c.archiver.signer).run().upgraded == [upgraded.id]
        jobs.append(_archive(c, fileserver, "alpha", inputs=inputs))
    with monkeypatch.context() as patched:
        _in_layout(patched, "root")
        jobs.append(_archive(c, fileserver))
    erased = _archive(c, fileserver)
    erase_job(
        c.db,
        c.store,
        c.archiver.signer,
        erased.id,
        actor="test",
        reason="asked to",
        origin=Origin.of(None, None),
    )
    keys = [j.manifest_key for j in jobs]
    assert [layout.parse(k).ocfl for k in keys] == [True, True, True, False, False]  # type: ignore[union-attr]
    assert keys[3].startswith("projects/alpha/2") and keys[4][:2] == "20"
    ids = [j.id for j in jobs] + [upgraded.id]

    client = create_app(container=c).test_client()
    before = _answers(client, [*ids, erased.id])
    _sign_in(client)
    pages = _dashboard(client, ids)
    assert before[ids[0]]["assets"][1]["content_credentials"] is not None
    assert before[erased.id]["status"] == "deleted"
    assert len(before["list:default"]) == 4 and len(before["list:alpha"]) == 3

    _lose_the_database(c)
    run = _cli(c, "reindex")
    assert run.returncode == 0, run.stderr
    assert _summary(run) == (
        "7 jobs in the archive: 6 imported, 0 already in the database, "
        "1 erased (recreated as deleted), 0 not imported (untrusted), 0 incomplete"
    )
    assert "reindexed 7/7 jobs" in run.stderr

    after_c = container()
    try:
        client = create_app(container=after_c).test_client()
        after = _answers(client, [*ids, erased.id])
        # The erased job answers again as erased, from its tombstone; nothing else came back.
        assert _erased(after, erased.id) == _erased(before, erased.id)
        # The upgrade kept the job's updated_at (when it was archived), as the archive does.
        assert after[upgraded.id]["updated_at"] == upgraded.updated_at.isoformat()
        assert after == before
        _sign_in(client)
        assert _dashboard(client, ids) == pages
        assert {pages[i][0] for i in ids} == {"ok: valid"}
        assert all(pages[i][2]["Provider's answer"] != "none yet" for i in ids)
        assert all(pages[p][1] for p in ("default", "alpha"))  # previews in both galleries
        # The first job's rows: its inputs, its two outputs and their thumbnails.
        with after_c.db.transaction() as s:
            roles = sorted(a.role for a in s.query(Asset).filter(Asset.job_id == ids[0]))
        assert roles == ["input", "input", "output", "output", "thumb", "thumb"]
        # The database and the archive agree, as `genvault audit` sees them.
        audited = run_audit(after_c.db, after_c.store, verifier=after_c.archiver.signer.verifier)
        assert len(audited) == len(ids) and all(r.ok for r in audited), audited
    finally:
        after_c.close()


@pytest.mark.damages_archive
def test_what_cannot_be_trusted_is_reported_and_the_rest_imported_once(
    tmp_path: Path, sandbox: str, fileserver: FileServer
) -> None:
    c = _container(tmp_path, "unused", sandbox, archive_url=f"file://{tmp_path / 'archive'}")
    _project(c, "alpha")
    good, bad, other, half, forged = (
        _archive(c, fileserver),
        _archive(c, fileserver),
        _archive(c, fileserver, "alpha"),
        _archive(c, fileserver),
        _archive(c, fileserver),
    )
    # One flipped byte in an image of ``bad`` (its inventory and manifest left as they were).
    root, image = _flip_a_byte(c, bad)
    # ``half``: an erasure that wrote its signed tombstone and stopped before removing
    # anything. ``forged``: erased, its tombstone's signature then replaced by another's.
    signer = c.archiver.signer
    stone = tombstone.tombstone_key("default", half.id)
    tombstone.write(
        c.store,
        signer,
        stone,
        tombstone.render(half, actor="t", at=utcnow(), reason="r", removed=[]),
        half.id,
    )
    erase_job(
        c.db,
        c.store,
        signer,
        forged.id,
        actor="test",
        reason="asked to",
        origin=Origin.of(None, None),
    )
    forged_stone = tombstone.tombstone_key("default", forged.id)
    _rewrite(c, forged_stone + ".sig", signer.sign(b"something else"))
    # An object never committed (its archive did not finish): counted, not an error.
    unfinished = layout.JobLayout.object("01a2" + "0" * 28, "default")
    c.store.put_bytes(
        unfinished.output_key(0, "png"), b"png", content_type="image/png", metadata={}
    )

    _lose_the_database(c)
    only = _cli(c, "reindex", "--project", "alpha")
    assert only.returncode == 0, only.stderr
    assert _summary(only).startswith("1 jobs in the archive: 1 imported, 0 already")

    run = _cli(c, "reindex")
    assert run.returncode == 1, run.stderr
    assert _summary(run) == (
        "6 jobs in the archive: 1 imported, 1 already in the database, "
        "1 erased (recreated as deleted), 2 not imported (untrusted), 1 incomplete"
    )
    reported = {r["job_id"]: r for r in map(json.loads, run.stdout.splitlines())}
    assert set(reported) == {bad.id, forged.id}
    assert reported[bad.id]["key"] == root
    assert any(r.startswith(f"altered {image}") for r in reported[bad.id]["reasons"])
    assert f"untrusted {root}: altered {image}" in run.stderr
    assert reported[forged.id]["key"] == forged_stone
    assert reported[forged.id]["reasons"] == [
        "tombstone: signature invalid: the signature does not match the manifest"
    ]
    assert f"incomplete {unfinished.object_root}" in run.stderr

    again = _cli(c, "reindex")
    assert again.returncode == 1
    assert _summary(again).startswith("6 jobs in the archive: 0 imported, 3 already in")

    after = _container(tmp_path, "unused", sandbox, archive_url=f"file://{tmp_path / 'archive'}")
    try:
        client = create_app(container=after).test_client()
        for job in (bad, forged):
            assert client.get(f"/v1/jobs/{job.id}", headers=AUTH).status_code == 404
        for job in (good, other):
            shown = client.get(f"/v1/jobs/{job.id}", headers=AUTH).get_json()
            assert shown["status"] == "archived" and shown["manifest_key"] == job.manifest_key
        # Erased, though its objects are all still there: none of them came back.
        shown = client.get(f"/v1/jobs/{half.id}", headers=AUTH).get_json()
        assert shown["status"] == "deleted" and shown["assets"] == []
        assert shown["manifest_key"] is None
    finally:
        after.close()


def test_an_interrupted_reindex_goes_on_where_it_stopped(
    tmp_path: Path, sandbox: str, fileserver: FileServer
) -> None:
    with _on_a_folder(tmp_path, sandbox) as c:
        first, second = _archive(c, fileserver), _archive(c, fileserver)
        fresh = _fresh_database(tmp_path)
        verifier = c.archiver.signer.verifier
        # The store goes away while the second job is read: the first one's batch stands.
        refusing = RefusingReads(c.store, lambda key: second.id in key)
        with pytest.raises(StorageUnavailable):
            reindex(fresh, refusing, verifier, batch=1)
        with fresh.transaction() as s:
            assert list(s.scalars(select(Job.id))) == [first.id]
        done = reindex(fresh, c.store, verifier, batch=1)
        assert (done.imported, done.skipped, done.ok) == (1, 1, True)
        fresh.dispose()


@pytest.mark.damages_archive
def test_jobs_are_checked_side_by_side_and_reported_in_job_order(
    tmp_path: Path, sandbox: str, fileserver: FileServer
) -> None:
    with _on_a_folder(tmp_path, sandbox) as c:
        jobs = [_archive(c, fileserver) for _ in range(3)]
        # The first two altered, the third left alone.
        flipped = [_flip_a_byte(c, job)[0] for job in jobs[:2]]
        fresh = _fresh_database(tmp_path)
        # Each job's first read waits until all three are being read: checked one at a time,
        # the barrier breaks. The first job then dawdles, so it is the last to finish.
        store = AllAtOnce(c.store, [job.id for job in jobs], slow=jobs[0].id)
        report = reindex(fresh, store, c.archiver.signer.verifier, parallel=3)
        assert (report.total, report.imported) == (3, 1)
        assert [p.job_id for p in report.problems] == [jobs[0].id, jobs[1].id]
        assert [p.key for p in report.problems] == flipped
        with fresh.transaction() as s:
            assert list(s.scalars(select(Job.id))) == [jobs[2].id]
        fresh.dispose()


def test_reindex_refuses_a_parallel_of_zero_before_reading_anything(
    tmp_path: Path, sandbox: str, fileserver: FileServer
) -> None:
    with _on_a_folder(tmp_path, sandbox) as c:
        _archive(c, fileserver)
        _lose_the_database(c)
        run = _cli(c, "reindex", "--parallel", "0")
        assert run.returncode != 0
        assert "--parallel wants 1 to 64 jobs at once, got 0" in run.stderr
        assert "imported" not in run.stderr


class AllAtOnce:
    """The real store, holding each job's first read until every job of ``job_ids`` has
    begun (a barrier); the reads of ``slow`` then take a moment longer."""

    def __init__(self, store: Any, job_ids: list[str], slow: str) -> None:
        self._store = store
        self._ids = job_ids
        self._waited: set[str] = set()
        self._lock = threading.Lock()
        self._barrier = threading.Barrier(len(job_ids), timeout=10)
        self._slow = slow

    def open(self, key: str) -> Any:
        job_id = next((j for j in self._ids if j in key), None)
        if job_id is not None:
            with self._lock:
                first = job_id not in self._waited
                self._waited.add(job_id)
            if first:
                self._barrier.wait()  # BrokenBarrierError if the jobs are read one by one
            if job_id == self._slow:
                time.sleep(0.05)
        return self._store.open(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class RefusingReads:
    """The real store, refusing to open the keys ``refuse`` picks (a store outage)."""

    def __init__(self, store: Any, refuse: Callable[[str], bool]) -> None:
        self._store = store
        self.refuse = refuse

    def open(self, key: str) -> Any:
        if self.refuse(key):
            raise StorageUnavailable(f"refused {key} (test)")
        return self._store.open(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
