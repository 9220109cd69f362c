"""What turning a callback body into its row costs: parse_callback + callback_values, in process.

No server, no database: the provider's parser and ``results.callback_values`` called in a
loop on already decoded bodies, as ``jobs/callbacks.py`` calls them. Every call gets a body
of its own (its own ids and URLs, as in production, where no two callbacks carry the same
URL: urllib's urlsplit keeps a cache). For each body shape it prints microseconds per call
(the median of ``--repeats`` timed runs of ``--number`` calls) for the parser, for
callback_values on its result (timed call by call, each right after its own parse, as in
production: redact_url remembers the URLs it has just cleaned), and for both together:

  - ingest     bench/ingest.py's callback_body: the ~250-byte success body of the load test
  - meta       a ModelsLab success whose ``meta`` echoes the request's params, our ``key``
               and ``webhook`` URL (``?token=...``) included
  - b64_json   an AI/ML API answer with two inline ``b64_json`` images (parse_aimlapi: the
               API sends no webhooks, but its submit answer takes the same path to its row)

    .venv/bin/python bench/callback_parse.py [--number 20000] [--repeats 7]
    .venv/bin/python bench/callback_parse.py --root /path/to/another/checkout  # that code
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if "--root" in sys.argv[:-1]:  # the code to measure, found before anything imports it
    ROOT = Path(sys.argv[sys.argv.index("--root") + 1]).resolve()
sys.path.insert(0, str(ROOT))

from service.jobs import results  # noqa: E402
from service.providers.base import ProviderResult  # noqa: E402
from service.providers.modelslab import ModelsLabClient  # noqa: E402
from service.providers.parsing import parse_aimlapi  # noqa: E402

# Only now: bench/ingest.py puts its own checkout first on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import callback_body  # noqa: E402

KEY = "ml-key-0123456789abcdef0123456789abcdef"
ENTERPRISE_KEY = "ml-ent-fedcba9876543210fedcba9876543210"
AIML_KEY = "aiml-0123456789abcdef0123456789abcdef"
DIGEST = "0" * 64


def ingest_body(i: int) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(callback_body(i, f"{i:032x}"))
    return body


def meta_body(i: int) -> dict[str, Any]:
    track_id = f"{i:032x}"
    webhook = f"https://gv.example/webhooks/modelslab/{track_id}?token=abcdef{i:016x}"
    return {
        "status": "success",
        "generationTime": 1.87,
        "id": 81443063 + i,
        "output": [
            f"https://pub-3626123a908346a7a8be8d9295f44e26.r2.dev/generations/{track_id}-0.png",
            f"https://pub-3626123a908346a7a8be8d9295f44e26.r2.dev/generations/{track_id}-1.png",
        ],
        "proxy_links": [
            f"https://cdn2.stablediffusionapi.com/generations/{track_id}-0.png",
            f"https://cdn2.stablediffusionapi.com/generations/{track_id}-1.png",
        ],
        "nsfw_content_detected": False,
        "track_id": track_id,
        "webhook_status": "sent",
        "meta": {
            "base64": "no",
            "enhance_prompt": "no",
            "guidance_scale": 7.5,
            "height": 512,
            "width": 512,
            "instant_response": "no",
            "key": KEY,
            "model_id": "flux",
            "n_samples": 2,
            "negative_prompt": "blurry, low quality",
            "num_inference_steps": 30,
            "prompt": "a lighthouse on a cliff at dusk, oil painting",
            "safety_checker": "no",
            "scheduler": "UniPCMultistepScheduler",
            "seed": 1373787908,
            "temp": "no",
            "track_id": track_id,
            "webhook": webhook,
        },
    }


def b64_body(i: int) -> dict[str, Any]:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + i.to_bytes(8) + bytes(range(256)) * 8)
    return {
        "id": f"gen-{i:x}",
        "created": 1733500000,
        "model": "flux/schnell",
        "has_nsfw_concepts": [False, False],
        "data": [
            {"b64_json": png.decode(), "width": 1024, "height": 1024, "revised_prompt": "a"},
            {"b64_json": png.decode(), "width": 1024, "height": 1024, "revised_prompt": "a"},
        ],
        "timings": {"inference": 0.81},
    }


def per_call_us(fn: Callable[[Any], Any], make: Callable[[int], Any], args: Any) -> float:
    """Median over the runs of the time per call of ``fn``, each on a new ``make(i)``."""
    runs = []
    for run in range(args.repeats):
        inputs = [make(run * args.number + i) for i in range(args.number)]
        start = time.perf_counter()
        for item in inputs:
            fn(item)
        runs.append((time.perf_counter() - start) / args.number * 1e6)
    return statistics.median(runs)


def values_us(parse: Callable[..., ProviderResult], make: Callable[[int], Any], args: Any) -> float:
    """Median over the runs of callback_values' time per call, each right after its parse."""
    runs = []
    clock = time.perf_counter
    for run in range(args.repeats):
        inputs = [make(run * args.number + i) for i in range(args.number)]
        total = 0.0
        for body in inputs:
            answer = parse(body)
            start = clock()
            results.callback_values(answer, digest=DIGEST)
            total += clock() - start
        runs.append(total / args.number * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--number", type=int, default=20000, help="calls per timed run")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs (median kept)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to measure")
    args = parser.parse_args()

    client = ModelsLabClient("https://modelslab.com/api", KEY, ENTERPRISE_KEY, None, timeout=1)  # type: ignore[arg-type]

    def aimlapi(body: Mapping[str, Any]) -> ProviderResult:
        return parse_aimlapi(body, secrets=(AIML_KEY,))

    shapes: dict[str, tuple[Callable[[int], dict[str, Any]], Callable[..., ProviderResult]]] = {
        "ingest": (ingest_body, client.parse_callback),
        "meta": (meta_body, client.parse_callback),
        "b64_json": (b64_body, aimlapi),
    }
    print(f"code: {ROOT}")
    print(f"{'body':<10} {'bytes':>6} {'parse us':>9} {'values us':>10} {'both us':>8}")
    for name, (make, parse) in shapes.items():
        parse_us = per_call_us(parse, make, args)
        values = values_us(parse, make, args)
        both_us = per_call_us(
            lambda body: results.callback_values(parse(body), digest=DIGEST),  # noqa: B023
            make,
            args,
        )
        size = len(json.dumps(make(0)))
        print(f"{name:<10} {size:>6} {parse_us:>9.2f} {values:>10.2f} {both_us:>8.2f}")


if __name__ == "__main__":
    main()
