"""Every import points down: a module imports only from its own layer or the ones below.

The layers, top to bottom (DESIGN.md "Layers"; STYLE.md 16):

  5  entry points: app, wiring, cli, devserver, gunicorn_conf, __main__, and every ``cli``
     module of a package (a command is an entry point wherever it lives)
  4  the HTTP layer and its clients: api, ui, client, sandbox
  3  use-cases: jobs, archive, events, access
  2  ports and adapters: tasks, providers, fetch, storage
  1  db, security, logs
  0  errors, config, metrics, strict_json, the package itself

Imports under ``if TYPE_CHECKING:`` are for the type checker only and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import service

RANKS = {
    **dict.fromkeys(("app", "wiring", "cli", "devserver", "gunicorn_conf", "__main__"), 5),
    **dict.fromkeys(("api", "ui", "client", "sandbox"), 4),
    **dict.fromkeys(("jobs", "archive", "events", "access"), 3),
    **dict.fromkeys(("tasks", "providers", "fetch", "storage"), 2),
    **dict.fromkeys(("db", "security", "logs", "http_log"), 1),
    **dict.fromkeys(("errors", "config", "metrics", "strict_json", "__init__", "__version__"), 0),
}
ROOT = Path(service.__file__).parent


def _rank(parts: tuple[str, ...]) -> int:
    """The layer of ``service.<parts>``; a package's ``cli`` module is an entry point."""
    if parts[-1] == "cli":
        return 5
    return RANKS[parts[0]]


def _imports(tree: ast.Module) -> list[ast.ImportFrom]:
    found: list[ast.ImportFrom] = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and (child.module or "").startswith("service"):
                found.append(child)
            walk(child)

    walk(tree)
    return found


def test_every_import_points_down() -> None:
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[0] in ("db",) and "migrations" in parts:
            continue  # Alembic's scripts are run by the migration command
        mine = _rank(parts)
        for node in _imports(ast.parse(path.read_text())):
            module = (node.module or "").split(".")[1:]
            # `from service import x` imports the module x.
            target = tuple(module) if module else (node.names[0].name,)
            if _rank(target) > mine:
                upward.append(f"{'.'.join(parts)}:{node.lineno} imports service.{'.'.join(target)}")
    assert upward == []
