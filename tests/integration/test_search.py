"""The gallery's q reads an index on both databases (migration 0009) and finds whole words."""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from service.db.migrate import upgrade
from service.db.models import Job
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
        for scan, most in ((1000, 10_000), (1, 10_000), (1, 1)):
            queries.SEARCH_SCAN, queries.SEARCH_MATCHES = scan, most
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
        queries.SEARCH_SCAN, queries.SEARCH_MATCHES = 1000, 10_000
        engine.dispose()
