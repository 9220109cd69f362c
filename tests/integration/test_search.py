"""The gallery's q reads an index on both databases (migration 0009) and finds whole words."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from service.db.migrate import upgrade
from service.db.models import Job, Project
from service.db.session import make_engine
from service.jobs.records import new_job_id, new_track_id
from service.jobs.states import JobStatus
from service.ui import queries
from service.ui.queries import Filters, gallery_page


def _add(session: Session, prompt: str, project: str = "default", **meta: object) -> str:
    job_id = new_job_id()
    session.add(
        Job(
            id=job_id,
            project=project,
            track_id=new_track_id(),
            endpoint="modelslab/text2img",
            status=JobStatus.ARCHIVED,
            params={"model_id": "m", "prompt": prompt},
            meta=dict(meta),
        )
    )
    session.flush()
    return job_id


def test_search_finds_whole_words_in_prompt_and_metadata_values(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with Session(engine) as s, s.begin():
            fox = _add(s, "A red Fox in the snow", order="o-17", n=100)
            cafe = _add(s, "un café à Paris", city="Zürich")
            other = _add(s, "a fox elsewhere", project="default")
            s.execute(update(Job).where(Job.id == other).values(params={"prompt": "an owl"}))
            gone = _add(s, "a fox to delete")
            s.execute(delete(Job).where(Job.id == gone))

        def found(q: str) -> list[str]:
            with Session(engine) as s:
                return [j.id for j in gallery_page(s, Filters(q=q), None).jobs]

        # Each path a search can take (queries._search): a page among the newest jobs; every
        # match off the index; too many matches, so read in order after all.
        for probe, scan, most in (
            (100, 1000, 10_000),
            (1, 1000, 10_000),
            (1, 1, 10_000),
            (1, 1, 1),
        ):
            queries.SEARCH_PROBE, queries.SEARCH_SCAN, queries.SEARCH_MATCHES = probe, scan, most
            assert found("fox") == [fox]  # updated and deleted jobs left the index
            assert found("FOX snow") == [fox]  # every word, any case
            assert found("owl") == [other]
            assert found("o-17") == [fox]  # a metadata value
            assert found("100") == [fox]  # a number in the metadata
            assert found("café") == [cafe] and found("Zürich") == [cafe]
            assert found("order") == []  # keys are not searched
            assert found("fo") == []  # whole words, not substrings
            # FTS syntax in user input is only words.
            for hostile in ('"', "fox OR owl", 'fox" OR "owl', "NEAR(fox owl)", "*", "-", "fox*"):
                assert set(found(hostile)) <= {fox}, hostile
    finally:
        queries.SEARCH_PROBE, queries.SEARCH_SCAN, queries.SEARCH_MATCHES = 100, 1000, 10_000
        engine.dispose()


def test_search_pages_are_complete_and_newest_first_whatever_the_step(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rare word (fewer matches than the first probe of the index), a word with exactly
    as many matches as that probe takes, a common one: every page in order, none missed."""
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with Session(engine) as s, s.begin():
            ids = []
            for i in range(14):
                words = ["common"] + (["five"] if i % 3 == 1 else []) + (["rare"] if i == 4 else [])
                ids.append(_add(s, " ".join(words), n=i))
            s.add(Project(slug="other", name="Other"))
            s.flush()
            for _ in range(3):  # another project's: never shown
                _add(s, "common five rare", project="other")
        newest = sorted(ids, reverse=True)
        expected = {
            "rare": [ids[4]],
            "five": [j for j in newest if ids.index(j) % 3 == 1],
            "common": newest,
            "common five": [j for j in newest if ids.index(j) % 3 == 1],
            "absent": [],
        }
        assert len(expected["five"]) == 5

        def pages(q: str, size: int) -> list[str]:
            found: list[str] = []
            cursor = None
            with Session(engine) as s:
                while True:
                    page = gallery_page(s, Filters(q=q), cursor, limit=size)
                    found += [j.id for j in page.jobs]
                    if page.next_cursor is None:
                        return found
                    cursor = page.next_cursor

        # (first, probe, scan, matches): each step answers in turn. The first scan fills a
        # page (common); the probe has every match (rare, and "five" when it takes 6) or is
        # full (exactly 5 matches), then the steps after it answer.
        steps = [
            (100, 100, 1000, 10_000),
            (1, 100, 1000, 10_000),
            (1, 5, 1000, 10_000),
            (1, 6, 1000, 10_000),
            (1, 5, 2, 10_000),
            (1, 5, 2, 5),
            (2, 6, 2, 5),
            (1, 1, 1, 1),
        ]
        for first, probe, scan, most in steps:
            monkeypatch.setattr(queries, "SEARCH_FIRST", first)
            monkeypatch.setattr(queries, "SEARCH_PROBE", probe)
            monkeypatch.setattr(queries, "SEARCH_SCAN", scan)
            monkeypatch.setattr(queries, "SEARCH_MATCHES", most)
            for q, want in expected.items():
                for size in (1, 2, 4, 48):
                    assert pages(q, size) == want, (first, probe, scan, most, q, size)
    finally:
        engine.dispose()
