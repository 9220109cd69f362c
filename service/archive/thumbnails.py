"""Thumbnails: a small WebP of each stored output, made once at archive time.

They are *derived* objects: stored beside the outputs (``{job}/thumbs/{index}.webp``),
recorded as assets with role ``thumb`` and listed in the manifest under ``derived``, never
as outputs. A thumbnail is a convenience for the dashboard, so one that cannot be made is
logged and skipped: it never fails the archive.

Most are rendered from the pixels verification has just decoded and stored right behind
their output (pipeline.py); ``Thumbnailer.make`` renders the rest from files: outputs too
large to have been decoded whole, and outputs stored by an earlier run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from service.archive import layout
from service.archive.ocfl import objects as ocfl_objects
from service.archive.parallel import in_parallel
from service.db.models import Asset, Job
from service.db.session import Database
from service.storage.base import ArchiveStore, ObjectExists

log = logging.getLogger(__name__)

ROLE = "thumb"
MAX_SIDE = 256
QUALITY = 80
# libwebp's effort, 0-6. At this size 0 makes files within about 10 % of 4's in under half
# the time (the encoder was most of a thumbnail's cost; bench/archive_throughput.py).
METHOD = 0
# Only what the archive accepts as an output ever reaches here; Pillow is held to that.
_FORMATS = ("PNG", "JPEG", "WEBP")
# A PNG or WebP cannot be decoded at a reduced scale, so a preview of a file costs its
# whole decoded size in memory: 12 megapixels (4000 x 3000) is 34 MiB of RGB, and keeps the
# worker's growth for any one image under the 64 MiB of bench/archive_memory.py (a 200 MB
# PNG grew it by 255 MiB for its preview; 4096 x 4096 still by 66 MiB). A larger output,
# far beyond what the providers generate, gets no thumbnail rather than a memory spike.
MAX_SOURCE_PIXELS = 12_000_000


class TooLarge(ValueError):
    """The image has more pixels than a thumbnail may be made from."""


@dataclass(frozen=True)
class Preview:
    """A thumbnail rendered, not yet stored: WebP bytes and their size in pixels."""

    data: bytes
    width: int
    height: int


def render_image(image: Image.Image) -> Preview:
    """The thumbnail of an image already open (or decoded), which it shrinks in place.

    In place, so a large image is never held twice (exif_transpose would otherwise copy it).
    """
    ImageOps.exif_transpose(image, in_place=True)
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    # reducing_gap=1.0: shrink by whole factors with reduce() (a box filter: each thumbnail
    # pixel the mean of the block it covers), then resample only what is left (less than
    # 2x). At preview size that looks the same as resampling all the way, in a fraction of
    # the time.
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BICUBIC, reducing_gap=1.0)
    out = io.BytesIO()
    image.save(out, "WEBP", quality=QUALITY, method=METHOD)
    return Preview(out.getvalue(), image.width, image.height)


def render(source: Path, *, max_pixels: int) -> Preview:
    """The thumbnail of the image file ``source``."""
    with Image.open(source, formats=_FORMATS) as opened:
        if opened.width * opened.height > max_pixels:
            raise TooLarge(f"{opened.width}x{opened.height} is too large to thumbnail")
        opened.draft("RGB", (MAX_SIDE * 2, MAX_SIDE * 2))  # JPEG: decode at a reduced scale
        return render_image(opened)


class Thumbnailer:
    """Stores the thumbnails of a job's stored outputs."""

    def __init__(self, db: Database, store: ArchiveStore, *, max_pixels: int) -> None:
        self.db = db
        self.store = store
        self.max_pixels = min(max_pixels, MAX_SOURCE_PIXELS)

    def make(
        self,
        job: Job,
        where: layout.JobLayout,
        assets: Iterable[Asset],
        staged: Mapping[int, Path],
        workdir: Path,
    ) -> None:
        """Thumbnail every stored, non-quarantined output that has none yet.

        ``staged`` maps output indexes to files still on disk; an output stored by an
        earlier run is read back from the store instead.
        """
        assets = list(assets)
        have = {a.index for a in assets if a.role == ROLE}
        wanted = [
            (output,)
            for output in assets
            if output.role == "output"
            and output.index not in have
            and output.key
            # No previews of content held back by the NSFW policy.
            and not layout.is_quarantined(output.key)
        ]

        def one(output: Asset) -> None:
            with logged_failure(job, output.index):
                preview = self._render(output, staged.get(output.index), workdir)
                row = self.store_preview(job, where, output, preview)
                with self.db.transaction() as session:
                    session.add(row)

        # Side by side like the outputs: Pillow and the store's uploads release the GIL.
        in_parallel(one, wanted)

    def _render(self, output: Asset, source: Path | None, workdir: Path) -> Preview:
        assert output.key is not None
        if source is None:
            source = workdir / f"thumb-source-{output.index}"
            with self.store.open(output.key) as stream, source.open("wb") as out:
                shutil.copyfileobj(stream, out)
        return render(source, max_pixels=self.max_pixels)

    def store_preview(
        self, job: Job, where: layout.JobLayout, output: Asset, preview: Preview
    ) -> Asset:
        """Store the thumbnail of the stored ``output``; its asset row, for the caller to add.

        ``where``: the job's layout (pipeline.job_layout), the one its outputs are in.
        """
        assert output.key is not None
        sha256 = hashlib.sha256(preview.data).hexdigest()
        size = len(preview.data)
        key = where.thumb_key(output.index)
        try:
            self.store.put_bytes(
                key,
                preview.data,
                content_type="image/webp",
                metadata={
                    "job-id": job.id,
                    "track-id": job.track_id,
                    "role": ROLE,
                    "of": output.key,
                },
            )
            ocfl_objects.remember(self.store, key, [preview.data])  # for the inventory
        except ObjectExists:
            # An earlier run stored it and died before recording it: record what is there.
            info = self.store.head(key)
            sha256 = info.sha256 or sha256
            size = info.size
        return Asset(
            job_id=job.id,
            role=ROLE,
            index=output.index,
            key=key,
            source_url=output.key,  # what it was derived from
            sha256=sha256,
            size=size,
            content_type="image/webp",
            width=preview.width,
            height=preview.height,
        )


@contextlib.contextmanager
def logged_failure(job: Job, index: int) -> Iterator[None]:
    """A thumbnail is a convenience: one that fails is logged, and the archive goes on."""
    try:
        yield
    except TooLarge as exc:
        log.info("no thumbnail: %s", exc, extra={"job_id": job.id, "index": index})
    except Exception:
        log.warning("thumbnail failed", exc_info=True, extra={"job_id": job.id, "index": index})


def manifest_entries(assets: Iterable[Asset]) -> list[dict[str, object]]:
    """The manifest's ``derived`` list: what each derived object is and which output it shows."""
    return [
        {
            "kind": "thumbnail",
            "key": a.key,
            "sha256": a.sha256,
            "size": a.size,
            "content_type": a.content_type,
            "width": a.width,
            "height": a.height,
            "of": {"role": "output", "index": a.index, "key": a.source_url},
        }
        for a in sorted(assets, key=lambda a: a.index)
        if a.role == ROLE
    ]
