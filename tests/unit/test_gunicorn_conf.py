"""deploy/gunicorn.conf.py as gunicorn reads it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Loads the file the way gunicorn does (its own loader), then runs the hook gunicorn calls in
# each worker once the app is loaded, in a process of its own: it freezes the collector.
_PROBE = """
import gc
from gunicorn.app.base import Application
from gunicorn.config import Config


class Loader(Application):
    def init(self, parser, opts, args):
        pass

    def load(self):
        pass


loader = Loader.__new__(Loader)
loader.cfg = Config()
loader.load_config_from_file("deploy/gunicorn.conf.py")
hook = loader.cfg.post_worker_init
print(hook.__module__, hook.__name__)
print(loader.cfg.logger_class.__module__, loader.cfg.logger_class.__name__)
import service.app  # what a worker has loaded by then, roughly
import weakref


class Node:
    pass


garbage = Node()
garbage.me = garbage  # a cycle nothing refers to: only the collector frees it
left = weakref.ref(garbage)
del garbage
before = gc.get_freeze_count()
hook(None)
print(before, gc.get_freeze_count() > 50_000, left() is None)
"""


def test_workers_freeze_the_loaded_app_out_of_the_collectors_scans() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0] == "service.gunicorn_conf post_worker_init"
    # The access line from the fields it shows (service/http_log.py).
    assert out[1] == "service.http_log AccessLogger"
    # Nothing frozen before; the app's objects after; the garbage cycle collected before
    # the freeze, not frozen with the rest.
    assert out[2] == "0 True True"
