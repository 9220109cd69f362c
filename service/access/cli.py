"""`genvault keys`, `genvault projects` and `genvault audit-log`.

HTTP clients of the running service (GENVAULT_URL, GENVAULT_TOKEN), like `genvault jobs`,
except `genvault keys create --bootstrap`: the very first admin key of a new deployment,
written straight into the database (whoever can reach the database already holds every
power), so no server and no earlier credential is needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from service.client.api import ApiClient


def _call(method: str, path: str, body: Any = None, **params: Any) -> Any:
    query = {k: v for k, v in params.items() if v is not None}
    return ApiClient.from_env().request(method, path, json=body, params=query or None)


def _print(args: argparse.Namespace, data: Any, line: Callable[[Any], str]) -> None:
    print(json.dumps(data, indent=2) if args.json else line(data))


def _key_line(k: dict[str, Any]) -> str:
    state = "revoked" if k.get("revoked_at") else f"expires {k['expires_at'][:10]}"
    project = k["project"] or "*"
    return f"{k['id']}  {project}  {state}  {k['name']}  [{' '.join(k['scopes'])}]"


def _created(args: argparse.Namespace, data: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(data, indent=2))
        return
    print(_key_line(data))
    print(f"key: {data['key']}")
    print("This is the only time the key is shown: store it now.", file=sys.stderr)


def _bootstrap(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    from service.access import issuing
    from service.access.audit_log import Origin
    from service.access.principal import Principal
    from service.access.scopes import ALL_SCOPES, Role, Scope
    from service.db.session import Database, make_engine

    db = Database(make_engine(settings.database_url))
    operator = Principal("cli", "bootstrap", "genvault keys create --bootstrap", {None: ALL_SCOPES})
    project = None if args.project in (None, "*") else args.project
    scopes = issuing.scopes_of(
        [Scope(s) for s in args.scope] if args.scope else None,
        Role(args.role) if args.role else (None if args.scope else Role.ADMIN),
    )
    try:
        with db.transaction() as session:
            issued = issuing.issue_audited(
                session,
                settings.secret,
                operator,
                issuing.KeyRequest(args.name, project, scopes, args.expires_in_days),
                origin=Origin(),
                default_days=settings.key_default_days,
                max_days=settings.key_max_days,
            )
        row = issued.row
        return {
            "id": row.id,
            "name": row.name,
            "project": row.project,
            "scopes": list(row.scopes),
            "created_by": row.created_by,
            "created_at": row.created_at.isoformat(),
            "expires_at": row.expires_at.isoformat(),
            "key": issued.key,
        }
    finally:
        db.dispose()


def cmd_keys(args: argparse.Namespace, settings_for_bootstrap: Callable[[], Any]) -> int:
    if args.action == "list":
        data = _call("GET", "/v1/keys", project=args.project)
        _print(args, data, lambda d: "\n".join(_key_line(k) for k in d["keys"]))
    elif args.action == "create":
        if args.bootstrap:
            _created(args, _bootstrap(args, settings_for_bootstrap()))
            return 0
        body: dict[str, Any] = {"name": args.name, "project": args.project}
        if args.scope:
            body["scopes"] = args.scope
        else:
            body["role"] = args.role or "viewer"
        if args.expires_in_days is not None:
            body["expires_in_days"] = args.expires_in_days
        _created(args, _call("POST", "/v1/keys", {k: v for k, v in body.items() if v is not None}))
    elif args.action == "revoke":
        _call("DELETE", f"/v1/keys/{args.id}")
        print(f"revoked {args.id}")
    return 0


def cmd_projects(args: argparse.Namespace) -> int:
    if args.action == "list":
        data = _call("GET", "/v1/projects")
        _print(args, data, lambda d: "\n".join(f"{p['slug']}  {p['name']}" for p in d["projects"]))
    else:
        data = _call("POST", "/v1/projects", {"slug": args.slug, "name": args.name or args.slug})
        _print(args, data, lambda p: f"{p['slug']}  {p['name']}")
    return 0


def _entry_line(e: dict[str, Any]) -> str:
    where = e["project"] or "-"
    head = f"{e['at'][:19]}  {e['action']:<24} {e['outcome']:<8} {where:<12}"
    return f"{head} {e['actor']}  {e['target'] or ''}".rstrip()


def cmd_audit_log(args: argparse.Namespace) -> int:
    cursor = None
    shown = 0
    entries: list[dict[str, Any]] = []
    while shown < args.limit:
        page = _call(
            "GET",
            "/v1/audit-log",
            action=args.action,
            actor=args.actor,
            since=args.since,
            limit=min(200, args.limit - shown),
            cursor=cursor,
        )
        entries += page["entries"]
        shown += len(page["entries"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    if args.json:
        print(json.dumps({"entries": entries}, indent=2))
    else:
        for entry in entries:
            print(_entry_line(entry))
    return 0


def add_parsers(sub: Any, settings_for_bootstrap: Callable[[], Any]) -> None:
    note = " (over the API: GENVAULT_URL, GENVAULT_TOKEN)"
    k = sub.add_parser("keys", help="create, list or revoke API keys" + note)
    actions = k.add_subparsers(dest="action", required=True)
    c = actions.add_parser("create", help="a new key, shown once")
    c.add_argument("--name", required=True)
    c.add_argument("--project", help="its project; * for every project (admins only)")
    c.add_argument("--role", choices=["viewer", "operator", "admin"])
    c.add_argument("--scope", action="append", help="an exact scope (repeatable), not a role")
    c.add_argument("--expires-in-days", type=int)
    c.add_argument(
        "--bootstrap",
        action="store_true",
        help="write the key straight into the database (GENVAULT_DATABASE_URL and "
        "GENVAULT_SECRET_KEY; no server): the first admin key of a deployment",
    )
    c.add_argument("--json", action="store_true")
    li = actions.add_parser("list")
    li.add_argument("--project", help="a project, or * for every key")
    li.add_argument("--json", action="store_true")
    r = actions.add_parser("revoke")
    r.add_argument("id")
    k.set_defaults(func=lambda a: cmd_keys(a, settings_for_bootstrap))

    p = sub.add_parser("projects", help="list or create projects" + note)
    pa = p.add_subparsers(dest="action", required=True)
    pa.add_parser("list").add_argument("--json", action="store_true")
    pc = pa.add_parser("create")
    pc.add_argument("slug")
    pc.add_argument("--name")
    pc.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_projects)

    a = sub.add_parser("audit-log", help="who changed what, newest first" + note)
    a.add_argument("--action")
    a.add_argument("--actor", help="the actor's beginning, e.g. key:ID or user:email")
    a.add_argument("--since", help="ISO 8601 date or time")
    a.add_argument("--limit", type=int, default=50)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_audit_log)
