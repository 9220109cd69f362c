"""Reindex throughput: rebuilding jobs from the archive, one job at a time and side by side.

Archives --jobs jobs of --images generated 512x512 PNGs (each with its thumbnail, manifest
and signature, as the worker does) to moto's S3 in server mode, then rebuilds them with
service/archive/reindex.py into a fresh database once per --parallel value, and prints jobs
per second and the ratio to one at a time. Every run must import every job.

Reindex reads every file of a job back to check it, so on S3 its time is round trips:
--rtt-ms puts bench/delay_proxy.py in front of S3 (20 ms by default, a bucket in another
zone or region); --rtt-ms 0 measures loopback, where only the CPU counts.

    .venv/bin/python bench/reindex_throughput.py [--jobs 24] [--images 2] [--rtt-ms 20]
        [--parallel 1,4,8,16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from archive_throughput import make_jobs, png, s3_container  # noqa: E402
from bench_support import delayed, file_server, moto_server  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--rtt-ms", type=float, default=20, help="round trip added to S3")
    parser.add_argument("--parallel", default="1,4,8,16", help="jobs checked at once, per run")
    args = parser.parse_args()
    widths = [int(p) for p in args.parallel.split(",")]
    n = args.jobs * args.images
    with tempfile.TemporaryDirectory() as tmp_name, moto_server() as s3_server:
        tmp = Path(tmp_name)
        images = tmp / "img"
        images.mkdir()
        for i in range(n):
            (images / f"{i}.png").write_bytes(png(i))
        with file_server(images) as files, delayed(s3_server, args.rtt_ms) as s3:
            urls = [f"{files.url}/{i}.png" for i in range(n)]
            rates = measure(args, s3.url, urls, tmp, widths)
    network = f"{args.rtt_ms:g} ms round trip to S3" if args.rtt_ms else "loopback S3"
    print(f"reindex: {args.jobs} jobs of {args.images} images (512x512), moto S3, {network}")
    for width, rate in zip(widths, rates, strict=True):
        print(f"  {width:2} at once   {rate:6.1f} jobs/s  {rate / rates[0]:5.2f}x")
    return 0


def measure(
    args: argparse.Namespace, s3_url: str, urls: list[str], tmp: Path, widths: list[int]
) -> list[float]:
    from service.archive.reindex import reindex
    from service.db.migrate import upgrade
    from service.db.session import Database, make_engine

    container, _s3, _bucket = s3_container(s3_url, tmp)
    rates = []
    try:
        groups = [urls[j * args.images : (j + 1) * args.images] for j in range(args.jobs)]
        for job_id in make_jobs(container, groups):
            container.archiver.archive(job_id)
        verifier = container.archiver.signer.verifier
        for width in widths:
            fresh = Database(make_engine(f"sqlite:///{tmp}/fresh-{width}.db"))
            upgrade(fresh.engine)
            t0 = time.perf_counter()
            report = reindex(fresh, container.store, verifier, parallel=width)
            rates.append(args.jobs / (time.perf_counter() - t0))
            fresh.dispose()
            if (report.imported, report.ok) != (args.jobs, True):
                raise RuntimeError(f"{width} at once imported {report.imported}: {report}")
    finally:
        container.close()
    return rates


if __name__ == "__main__":
    raise SystemExit(main())
