"""Peak RSS of `genvault worker` while it archives a very large image.

Starts moto's S3 server, the sandbox, gunicorn and one `genvault worker`; serves a
generated PNG of about 200 MB from a loopback HTTP server; delivers a webhook pointing at
it; and samples the worker's resident memory (/proc/PID/status) every 10 ms while it
downloads, hashes, verifies and uploads (multipart) the image. As a baseline in the same
run it first archives a 1 MB image the same way. Prints the peak RSS growth over the
worker's idle RSS for both.

    .venv/bin/python bench/archive_memory.py [--megabytes 200]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_support import create_bucket, moto_server  # noqa: E402

from service.security.tokens import webhook_token  # noqa: E402
from tests.support.s3 import free_port  # noqa: E402
from tests.support.stack import SECRET, Stack, start_stack  # noqa: E402


def make_png(path: Path, megabytes: int) -> None:
    """An incompressible RGB PNG of about ``megabytes`` MB, written row band by row band."""
    import zlib

    side = int((megabytes * 1_000_000 / 3) ** 0.5)
    with path.open("wb") as f:

        def chunk(kind: bytes, data: bytes) -> None:
            f.write(len(data).to_bytes(4, "big") + kind + data)
            f.write(zlib.crc32(kind + data).to_bytes(4, "big"))

        f.write(b"\x89PNG\r\n\x1a\n")
        chunk(b"IHDR", side.to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0]))
        deflate = zlib.compressobj(1)
        for start in range(0, side, 256):
            rows = min(256, side - start)
            raw = b"".join(b"\x00" + os.urandom(side * 3) for _ in range(rows))
            chunk(b"IDAT", deflate.compress(raw))
        chunk(b"IDAT", deflate.flush())
        chunk(b"IEND", b"")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def archive_one(stack: Stack, worker_pid: int, url: str) -> tuple[int, int, float]:
    """Archive the image at ``url``; (idle RSS KiB, peak RSS KiB, seconds)."""
    job = stack.submit(
        "modelslab/text2img",
        {
            "model_id": "m",
            "prompt": f"[sandbox:processing,eta=600,webhook-never] {url}",
        },
    )
    job = stack.wait(job["id"], lambda j: j["status"] == "processing")
    time.sleep(0.5)
    idle = rss_kib(worker_pid)
    peak, done = idle, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kib(worker_pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    t0 = time.monotonic()
    body = {
        "status": "success",
        "id": job["provider_request_id"],
        "output": [url],
        "track_id": job["track_id"],
    }
    token = webhook_token(SECRET.encode(), "modelslab", job["track_id"])
    r = requests.post(
        f"{stack.web_url}/webhooks/modelslab/{job['track_id']}?token={token}",
        data=json.dumps(body),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    r.raise_for_status()
    final = stack.wait_status(job["id"], "archived", "failed", timeout=600)
    seconds = time.monotonic() - t0
    done.set()
    sampler.join()
    if final["status"] != "archived":
        raise SystemExit(f"archive failed: {final['error']}")
    return idle, peak, seconds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megabytes", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, moto_server() as s3:
        tmp_path = Path(tmp)
        files = tmp_path / "files"
        files.mkdir()
        print(f"generating a {args.megabytes} MB PNG …", flush=True)
        make_png(files / "big.png", args.megabytes)
        make_png(files / "small.png", 1)
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(files))
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None  # type: ignore[method-assign]
        images = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        threading.Thread(target=images.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{images.server_address[1]}"

        create_bucket(s3.url)
        stack = start_stack(
            tmp_path,
            s3.url,
            "bench",
            f"sqlite:///{tmp_path / 'bench.db'}",
            workers=1,
            GENVAULT_MAX_IMAGE_PIXELS="100000000",
            GENVAULT_DOWNLOAD_MAX_BYTES=str(400 * 1024 * 1024),
            GENVAULT_POLL_GRACE_SECONDS="600",
            GENVAULT_LOG_LEVEL="WARNING",
        )
        try:
            worker = next(p for p in stack.procs if "worker" in " ".join(map(str, p.args)))
            size = (files / "big.png").stat().st_size
            small_idle, small_peak, small_s = archive_one(stack, worker.pid, f"{base}/small.png")
            idle, peak, seconds = archive_one(stack, worker.pid, f"{base}/big.png")
        finally:
            stack.stop()
            images.shutdown()
    for label, (idle_kib, peak_kib, secs) in (
        ("baseline, 1 MB image", (small_idle, small_peak, small_s)),
        (f"large, {size / 1e6:.0f} MB image", (idle, peak, seconds)),
    ):
        growth = (peak_kib - idle_kib) / 1024
        idle_mib = idle_kib / 1024
        print(f"{label:<22} idle RSS {idle_mib:6.1f} MiB, growth {growth:5.1f} MiB, {secs:.1f} s")
    print(f"peak growth for the large image: {(peak - idle) / 1024:.1f} MiB (target: under 64 MiB)")
    # A figure, not a test: make bench goes on to the next bench either way.
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
