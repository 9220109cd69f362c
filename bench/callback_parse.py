"""What turning a callback body into its row costs: parse_callback + callback_values, in process.

No server, no database: the provider's parser and ``results.callback_values`` called in a
loop on an already decoded body, as ``jobs/callbacks.py`` calls them. For each body shape it
prints microseconds per call (the median of ``--repeats`` timed runs of ``--number`` calls)
for the parser, for callback_values on its result, and for both together:

  - ingest     bench/ingest.py's callback_body: the ~250-byte success body of the load test
  - meta       a ModelsLab success whose ``meta`` echoes the request's params, our ``key``
               and ``webhook`` URL (``?token=...``) included
  - b64_json   an AI/ML API answer with two inline ``b64_json`` images (parse_aimlapi: the
               API sends no webhooks, but its submit answer takes the same path to its row)

    .venv/bin/python bench/callback_parse.py [--number 20000] [--repeats 7]
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
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import callback_body  # noqa: E402

from service.jobs import results  # noqa: E402
from service.providers.base import ProviderResult  # noqa: E402
from service.providers.modelslab import ModelsLabClient  # noqa: E402
from service.providers.parsing import parse_aimlapi  # noqa: E402

KEY = "ml-key-0123456789abcdef0123456789abcdef"
ENTERPRISE_KEY = "ml-ent-fedcba9876543210fedcba9876543210"
AIML_KEY = "aiml-0123456789abcdef0123456789abcdef"
TRACK_ID = "3f1c2b4a5d6e7f8091a2b3c4d5e6f708"
DIGEST = "0" * 64


def meta_body() -> dict[str, Any]:
    webhook = f"https://gv.example/webhooks/modelslab/{TRACK_ID}?token=abcdef0123456789abcdef"
    return {
        "status": "success",
        "generationTime": 1.87,
        "id": 81443063,
        "output": [
            f"https://pub-3626123a908346a7a8be8d9295f44e26.r2.dev/generations/{TRACK_ID}-0.png",
            f"https://pub-3626123a908346a7a8be8d9295f44e26.r2.dev/generations/{TRACK_ID}-1.png",
        ],
        "proxy_links": [
            f"https://cdn2.stablediffusionapi.com/generations/{TRACK_ID}-0.png",
            f"https://cdn2.stablediffusionapi.com/generations/{TRACK_ID}-1.png",
        ],
        "nsfw_content_detected": False,
        "track_id": TRACK_ID,
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
            "track_id": TRACK_ID,
            "webhook": webhook,
        },
    }


def b64_body() -> dict[str, Any]:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8).decode()
    return {
        "id": "gen-7f3a",
        "created": 1733500000,
        "model": "flux/schnell",
        "has_nsfw_concepts": [False, False],
        "data": [
            {"b64_json": png, "width": 1024, "height": 1024, "revised_prompt": "a lighthouse"},
            {"b64_json": png, "width": 1024, "height": 1024, "revised_prompt": "a lighthouse"},
        ],
        "timings": {"inference": 0.81},
    }


def per_call_us(fn: Callable[[], Any], number: int, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--number", type=int, default=20000, help="calls per timed run")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs (median kept)")
    args = parser.parse_args()

    client = ModelsLabClient("https://modelslab.com/api", KEY, ENTERPRISE_KEY, None, timeout=1)  # type: ignore[arg-type]
    shapes: dict[str, tuple[Mapping[str, Any], Callable[[Mapping[str, Any]], ProviderResult]]] = {
        "ingest": (json.loads(callback_body(7, TRACK_ID)), client.parse_callback),
        "meta": (meta_body(), client.parse_callback),
        "b64_json": (b64_body(), lambda body: parse_aimlapi(body, secrets=(AIML_KEY,))),
    }
    print(f"{'body':<10} {'bytes':>6} {'parse us':>9} {'values us':>10} {'both us':>8}")
    for name, (body, parse) in shapes.items():
        answer = parse(body)
        parse_us = per_call_us(lambda: parse(body), args.number, args.repeats)  # noqa: B023
        values_us = per_call_us(
            lambda: results.callback_values(answer, digest=DIGEST),  # noqa: B023
            args.number,
            args.repeats,
        )
        both_us = per_call_us(
            lambda: results.callback_values(parse(body), digest=DIGEST),  # noqa: B023
            args.number,
            args.repeats,
        )
        size = len(json.dumps(body))
        print(f"{name:<10} {size:>6} {parse_us:>9.2f} {values_us:>10.2f} {both_us:>8.2f}")


if __name__ == "__main__":
    main()
