"""Archive throughput: the real pipeline against a naive script, same images, same S3.

Serves --jobs x --images generated 512x512 PNGs from a loopback HTTP server and runs moto's
S3 in server mode. In the same run it times, in images per second:

  - naive: for each image, requests.get then boto3 put_object (no checks at all)
  - genvault, one stream: Archiver.archive() job after job (download, verify, checksum,
    store write-once, asset rows, manifest)
  - genvault, worker concurrency: the same with --concurrency jobs at once (the worker's
    default worker_concurrency is 4)

and, to show where the CPU goes, per image: the CPU of this process (the naive script, or
genvault's pipeline) and of the moto server in each run, with the objects genvault stores
per image (its output, the output's thumbnail, and per job a manifest and its signature).

    .venv/bin/python bench/archive_throughput.py [--jobs 8] [--images 4] [--concurrency 4]
    .venv/bin/python bench/archive_throughput.py --rtt-ms 20   # over a 20 ms round trip
    .venv/bin/python bench/archive_throughput.py --root /path/to/other/checkout  # that code

On loopback every step costs only CPU, and two cores spent on genvault's checks, thumbnails
and extra objects cannot keep up with a script that does none of them. Real image hosts and
S3 are a network away: --rtt-ms puts bench/delay_proxy.py in front of both servers (the
naive script goes through the same proxies), and there the pipeline's concurrency shows.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The checkout whose code is measured (--root PATH) goes first, before anything imports its
# service package: bench_support does at once (through tests.support).
if "--root" in sys.argv[:-1]:
    sys.path.insert(0, str(Path(sys.argv[sys.argv.index("--root") + 1]).resolve()))

from bench_support import Server, delayed, file_server, moto_server  # noqa: E402


def png(seed: int) -> bytes:
    from PIL import Image

    # Noise does not compress: a realistic size (~790 KB) for a 512x512 generation.
    img = Image.frombytes("RGB", (512, 512), os.urandom(512 * 512 * 3))
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def naive(urls: list[str], s3: object, bucket: str) -> float:
    t0 = time.perf_counter()
    for i, url in enumerate(urls):
        body = requests.get(url, timeout=30).content
        s3.put_object(Bucket=bucket, Key=f"naive/{i}.png", Body=body)  # type: ignore[attr-defined]
    return len(urls) / (time.perf_counter() - t0)


def make_jobs(container: object, groups: list[list[str]]) -> list[str]:
    from service.db.models import Callback, Job
    from service.jobs.records import new_job_id, new_track_id
    from service.jobs.results import result_to_json
    from service.jobs.states import JobStatus
    from service.providers.base import ProviderResult, ResultStatus

    ids = []
    with container.db.transaction() as s:  # type: ignore[attr-defined]
        for urls in groups:
            job = Job(
                id=new_job_id(),
                track_id=new_track_id(),
                endpoint="modelslab/text2img",
                status=JobStatus.ARCHIVING,
                params={"model_id": "m", "prompt": "bench", "width": 512, "height": 512},
                meta={},
            )
            s.add(job)
            s.flush()
            answer = ProviderResult(
                ResultStatus.SUCCESS, outputs=tuple(urls), width=512, height=512
            )
            cb = Callback(
                job_id=job.id,
                source="webhook",
                status="success",
                body={},
                result=result_to_json(answer),
                body_sha256=uuid.uuid4().hex,
            )
            s.add(cb)
            s.flush()
            job.result_callback_id = cb.id
            ids.append(job.id)
    return ids


@dataclass
class Figures:
    naive: float  # images/s
    single: float
    many: float
    # CPU seconds per image of this process and of the S3 server; genvault's figures are
    # for its two runs (one stream, worker concurrency) together.
    naive_cpu: float
    naive_s3_cpu: float
    genvault_cpu: float
    genvault_s3_cpu: float
    objects_per_image: float


def s3_container(s3_url: str, tmp: Path) -> tuple[Any, Any, str]:
    """genvault's container archiving to a new bucket of the S3 at ``s3_url``, its database
    a SQLite file in ``tmp``, images fetched from loopback: (container, S3 client, bucket)."""
    import boto3

    from service.db.migrate import upgrade
    from service.wiring import build
    from tests.support.app import make_settings

    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": s3_url,
    }.items():
        os.environ[k] = v
    s3 = boto3.client("s3")
    bucket = f"bench-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    settings = make_settings(
        f"sqlite:///{tmp}/bench.db",
        tmp,
        archive_url=f"s3://{bucket}/archive",
        download_allowed_hosts=("127.0.0.1",),
        download_allowed_networks=("127.0.0.1/32",),
        log_level="WARNING",
    )
    container = build(settings)
    upgrade(container.db.engine)
    return container, s3, bucket


def measure(
    args: argparse.Namespace, s3_server: Server, s3_url: str, urls: list[str], tmp: Path
) -> Figures:
    container, s3, bucket = s3_container(s3_url, tmp)
    groups = [urls[j * args.images : (j + 1) * args.images] for j in range(args.jobs)]
    try:

        def objects_stored() -> int:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="archive/")
            return sum(page.get("KeyCount", 0) for page in pages)

        # Warm up both sides alike: connections, pools, and genvault's first archive.
        naive(urls[:2], s3, bucket)
        for job_id in make_jobs(container, [urls[:2]]):
            container.archiver.archive(job_id)
        warm_objects = objects_stored()
        cpu, s3_cpu = time.process_time(), s3_server.cpu_seconds()
        base_rate = naive(urls, s3, bucket)
        naive_cpu = time.process_time() - cpu, s3_server.cpu_seconds() - s3_cpu
        single_ids = make_jobs(container, groups)
        many_ids = make_jobs(container, groups)
        cpu, s3_cpu = time.process_time(), s3_server.cpu_seconds()
        t0 = time.perf_counter()
        for job_id in single_ids:
            container.archiver.archive(job_id)
        single = len(urls) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(container.archiver.archive, many_ids))
        many = len(urls) / (time.perf_counter() - t0)
        genvault_cpu = time.process_time() - cpu, s3_server.cpu_seconds() - s3_cpu
        objects = objects_stored() - warm_objects
    finally:
        container.close()
    n = len(urls)
    return Figures(
        base_rate,
        single,
        many,
        naive_cpu[0] / n,
        naive_cpu[1] / n,
        genvault_cpu[0] / (2 * n),
        genvault_cpu[1] / (2 * n),
        objects / (2 * n),
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--rtt-ms",
        type=float,
        default=0,
        help="round trip added to the image server and to S3 (bench/delay_proxy.py)",
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose code is measured")
    args = parser.parse_args()

    n = args.jobs * args.images
    with (
        tempfile.TemporaryDirectory() as tmp,
        moto_server() as s3_server,
    ):
        images = Path(tmp) / "img"
        images.mkdir()
        sizes = []
        for i in range(n):
            data = png(i)
            sizes.append(len(data))
            (images / f"{i}.png").write_bytes(data)
        with (
            file_server(images) as files,
            delayed(files, args.rtt_ms) as image_host,
            delayed(s3_server, args.rtt_ms) as s3_endpoint,
        ):
            urls = [f"{image_host.url}/{i}.png" for i in range(n)]
            f = measure(args, s3_server, s3_endpoint.url, urls, Path(tmp))
    base_rate, single, many = f.naive, f.single, f.many
    size = sum(sizes) / n / 1000
    network = (
        f"{args.rtt_ms:g} ms round trip added to both (bench/delay_proxy.py)"
        if args.rtt_ms > 0
        else "loopback, no latency"
    )
    print(f"archive: {n} images of 512x512 (~{size:.0f} KB), moto S3 server, {network}")
    print(f"  naive get + put_object        {base_rate:6.1f} images/s   1.00x")
    print(
        f"  genvault, one stream          {single:6.1f} images/s  {single / base_rate:5.2f}x"
        "  (goal >= 0.85x)"
    )
    print(
        f"  genvault, {args.concurrency} jobs at once       {many:6.1f} images/s"
        f"  {many / base_rate:5.2f}x  (goal >= 2x)"
    )
    print(
        f"  CPU per image, this process + S3 server: naive {f.naive_cpu * 1000:.1f}"
        f" + {f.naive_s3_cpu * 1000:.1f} ms, genvault {f.genvault_cpu * 1000:.1f}"
        f" + {f.genvault_s3_cpu * 1000:.1f} ms ({f.objects_per_image:.2f} objects per image)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
