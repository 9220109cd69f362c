"""`genvault events`, `genvault endpoints` and `genvault listen`: HTTP clients of the service.

They talk to the running service through the shared client (service.client.api: GENVAULT_URL,
GENVAULT_TOKEN, defaulting to `make run`'s server) rather than the database, so they work from
any machine that can reach the API. Errors propagate as ApiError: `genvault` prints them as one
line and exits 1, like submit, jobs, retry and audit --job.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from service.client.api import ApiClient, ApiError
from service.events import signing

MAX_BODY = 1024 * 1024


class Api:
    """The shared client (GENVAULT_URL, GENVAULT_TOKEN, one-line errors) with query params."""

    def __init__(self, client: ApiClient | None = None) -> None:
        self.client = client or ApiClient.from_env()

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        return self.client.request(method, path, json=body, params=query or None)


def _print(args: argparse.Namespace, data: Any, line: Callable[[Any], str] | None = None) -> None:
    if args.json or line is None:
        print(json.dumps(data, indent=2))
    else:
        print(line(data))


# Where a non-http endpoint sends, for the one-line listing.
_WHERE_FIELDS = ("queue_url", "topic_arn", "event_bus_name", "url")
ENDPOINT_TYPES = ("http", "sqs", "sns", "eventbridge", "rabbitmq", "nats", "redis")
# Flags of `endpoints create` that fill the type's config or credentials (DESIGN.md names).
CONFIG_FLAGS = (
    "queue_url",
    "topic_arn",
    "event_bus_name",
    "region",
    "endpoint_url",
    "exchange",
    "routing_key",
    "subject",
    "stream",
    "maxlen",
)
CREDENTIAL_FLAGS = ("access_key_id", "secret_access_key", "username", "password")


def _endpoint_line(e: dict[str, Any]) -> str:
    state = "enabled " if e["enabled"] else "disabled"
    types = ",".join(e["event_types"]) if e["event_types"] else "*"
    kind = e.get("type", "http")
    config = e.get("config") or {}
    where = e.get("url") or next((config[k] for k in _WHERE_FIELDS if config.get(k)), "")
    shown = where if kind == "http" else f"{kind}:{where}"
    return f"{e['id']}  {state}  {shown}  [{types}]  {e.get('description') or ''}".rstrip()


def _create_body(args: argparse.Namespace) -> dict[str, Any]:
    """POST /v1/endpoints from the flags; ``--type job.archived`` still means an event type."""
    given = args.type or []
    kinds = [t for t in given if t in ENDPOINT_TYPES]
    events = [t for t in given if t not in ENDPOINT_TYPES] + (args.event_type or [])
    kind = kinds[-1] if kinds else "http"
    body: dict[str, Any] = {
        "type": kind,
        "event_types": events or None,
        "description": args.description,
        "format": args.format,
        "links": args.links,
    }
    config = {k: getattr(args, k) for k in CONFIG_FLAGS if getattr(args, k) is not None}
    credentials = {k: getattr(args, k) for k in CREDENTIAL_FLAGS if getattr(args, k) is not None}
    if kind == "http":
        body["url"] = args.url
    elif args.url:
        config["url"] = args.url
    body["config"] = config or None
    body["credentials"] = credentials or None
    if kind == "http":
        body.pop("type")  # exactly today's request for today's endpoints
    return {k: v for k, v in body.items() if v}


def cmd_endpoints(args: argparse.Namespace) -> int:
    api = Api()
    action = args.action
    if action == "list":
        data = api.call("GET", "/v1/endpoints")
        _print(args, data, lambda d: "\n".join(_endpoint_line(e) for e in d["endpoints"]))
    elif action == "create":
        data = api.call("POST", "/v1/endpoints", _create_body(args))
        _print(args, data, lambda d: f"{_endpoint_line(d)}\nsecret: {d['secret']}")
    elif action == "show":
        _print(args, api.call("GET", f"/v1/endpoints/{args.id}"), _endpoint_line)
    elif action in ("enable", "disable"):
        data = api.call("PATCH", f"/v1/endpoints/{args.id}", {"enabled": action == "enable"})
        _print(args, data, _endpoint_line)
    elif action == "delete":
        api.call("DELETE", f"/v1/endpoints/{args.id}")
        _print(args, {"deleted": args.id}, lambda d: f"deleted {d['deleted']}")
    elif action == "secret":
        _print(args, api.call("GET", f"/v1/endpoints/{args.id}/secret"), lambda d: d["secret"])
    elif action == "rotate":
        data = api.call("POST", f"/v1/endpoints/{args.id}/rotate-secret")
        _print(args, data, lambda d: d["secret"])
    elif action == "recover":
        data = api.call("POST", f"/v1/endpoints/{args.id}/recover", {"since": args.since})
        _print(args, data, lambda d: f"{d['deliveries']} deliveries going out again")
    return 0


def _event_line(e: dict[str, Any]) -> str:
    job = e["data"].get("id") or e["data"].get("job_id") or e["data"].get("endpoint_id") or ""
    return f"{e['id']}  {e['created_at'][:19]}  {e['type']:<17} {job}"


def cmd_events(args: argparse.Namespace) -> int:
    api = Api()
    if args.resend:
        body = {"endpoint_id": args.endpoint} if args.endpoint else {}
        data = api.call("POST", f"/v1/events/{args.resend}/resend", body)
        _print(args, data, lambda d: f"resending to {', '.join(d['endpoint_ids']) or 'nobody'}")
    elif args.id and args.deliveries:
        data = api.call("GET", f"/v1/events/{args.id}/deliveries")
        _print(
            args,
            data,
            lambda d: "\n".join(
                f"{x['endpoint_id']}  {x['status']:<9} {len(x['attempts'])} attempts"
                + (
                    f"  last: {x['attempts'][-1]['error'] or x['attempts'][-1]['response_status']}"
                    if x["attempts"]
                    else ""
                )
                for x in d["deliveries"]
            ),
        )
    elif args.id:
        _print(args, api.call("GET", f"/v1/events/{args.id}"))
    else:
        data = api.call("GET", "/v1/events", type=args.type, job_id=args.job, limit=args.limit)
        _print(args, data, lambda d: "\n".join(_event_line(e) for e in d["events"]))
    return 0


def _receiver(secret: list[str], on_event: Callable[[dict[str, Any]], None]) -> type:
    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.send_response(413)
                self.end_headers()
                return
            body = self.rfile.read(length)
            try:
                signing.verify(secret[0], body, dict(self.headers.items()))
                event = json.loads(body)
            except (signing.SignatureError, ValueError) as exc:
                print(f"refused a delivery: {exc}", file=sys.stderr, flush=True)
                self.send_response(400)
                self.end_headers()
                return
            self.send_response(204)
            self.end_headers()
            on_event({"id": self.headers.get("webhook-id"), **event})

        def log_message(self, *args: Any) -> None:
            pass  # one line per event is printed by on_event instead

    return Receiver


def cmd_listen(args: argparse.Namespace) -> int:
    api = Api()
    secret: list[str] = []  # filled once registered; the server starts first to own the port

    def show(event: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(event), flush=True)
        else:
            data = event.get("data", {})
            subject = data.get("id") or data.get("job_id") or data.get("endpoint_id") or ""
            status = data.get("status", "")
            print(f"{event['timestamp'][:19]}  {event['type']:<17} {subject} {status}", flush=True)

    server = ThreadingHTTPServer((args.host, args.port), _receiver(secret, show))
    url = f"http://{args.host}:{server.server_address[1]}/"
    body: dict[str, Any] = {"url": url, "description": "genvault listen"}
    if args.type:
        body["event_types"] = args.type
    try:
        endpoint = api.call("POST", "/v1/endpoints", body)
    except ApiError as exc:
        server.server_close()
        hint = ""
        if "loopback" in str(exc) or "private-address" in str(exc):
            hint = " (the service must admit it: GENVAULT_EVENTS_ALLOWED_NETWORKS=127.0.0.1/32)"
        raise ApiError(f"{exc.message}{hint}", exc.status, exc.code) from None
    secret.append(endpoint["secret"])
    print(
        f"listening on {url} as endpoint {endpoint['id']}; Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.server_close()
        api.call("DELETE", f"/v1/endpoints/{endpoint['id']}")
        print(f"removed endpoint {endpoint['id']}", file=sys.stderr, flush=True)
    return 0


def add_parsers(sub: Any) -> None:
    """Add `events`, `endpoints` and `listen` to the `genvault` command."""
    e = sub.add_parser("events", help="list events, show one, its deliveries, or resend it")
    e.add_argument("id", nargs="?")
    e.add_argument("--type", help="only events of this type")
    e.add_argument("--job", help="only events about this job id")
    e.add_argument("--limit", type=int, default=50)
    e.add_argument("--deliveries", action="store_true", help="show the event's deliveries")
    e.add_argument("--resend", metavar="EVENT_ID", help="send this event again")
    e.add_argument("--endpoint", help="with --resend: only to this endpoint")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_events)

    p = sub.add_parser("endpoints", help="manage the endpoints events are sent to")
    p.add_argument("--json", action="store_true")
    actions = p.add_subparsers(dest="action")
    p.set_defaults(func=cmd_endpoints, action="list")
    actions.add_parser("list")
    c = actions.add_parser("create", help="http: a URL; or --type sqs --queue-url … and so on")
    c.add_argument("url", nargs="?", help="http(s) URL, or a broker's URL (rabbitmq nats redis)")
    c.add_argument(
        "--type",
        action="append",
        help=f"endpoint type ({' '.join(ENDPOINT_TYPES)}); a dotted event type, as before, "
        "means --event-type",
    )
    c.add_argument("--event-type", action="append", help="event type to receive (repeatable)")
    c.add_argument("--description")
    c.add_argument("--format", choices=("standard", "cloudevents"))
    c.add_argument("--links", choices=("fresh", "stable"))
    for name in CONFIG_FLAGS:
        c.add_argument(
            "--" + name.replace("_", "-"), type=int if name == "maxlen" else str, default=None
        )
    for name in CREDENTIAL_FLAGS:
        c.add_argument(
            "--" + name.replace("_", "-"),
            default=None,
            help="stored encrypted; prefer a credential chain or a shell without history",
        )
    for name in ("show", "delete", "enable", "disable", "secret", "rotate"):
        actions.add_parser(name).add_argument("id")
    r = actions.add_parser("recover", help="send failed deliveries since a time again")
    r.add_argument("id")
    r.add_argument("--since", required=True, help="ISO-8601, e.g. 2026-11-23T00:00:00Z")

    li = sub.add_parser("listen", help="receive and print events locally (registers itself)")
    li.add_argument("--port", type=int, default=0, help="port to listen on (0: any free one)")
    li.add_argument("--host", default="127.0.0.1")
    li.add_argument("--type", action="append", help="event type to receive (repeatable)")
    li.add_argument("--json", action="store_true", help="print each event as one JSON line")
    li.set_defaults(func=cmd_listen)
