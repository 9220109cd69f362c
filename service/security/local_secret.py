"""The secret key `genvault dev` makes for itself, kept under var/ for the CLI beside it.

`genvault dev` must start with nothing set, yet no secret may be published in the source
(anyone could mint webhook tokens and file links with it). So the first `genvault dev`
writes a random one to ``var/dev-secret-key`` (mode 0600) and reuses it afterwards, which
keeps webhook tokens, file links and the derived signing key stable across restarts. The
commands a user types beside it (`genvault audit`, `jobs`, `signing-key`, `submit`) read the
same file when GENVAULT_SECRET_KEY is unset; the web tier (`create_app()`) never does.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from service.config import Settings, load_settings

LOCAL_SECRET_FILE = Path("var/dev-secret-key")


def read_local_secret(path: Path = LOCAL_SECRET_FILE) -> str | None:
    """The secret `genvault dev` keeps in this directory, or None when there is none."""
    try:
        value = path.read_text().strip()
    except OSError:
        return None
    return value or None


def local_secret(path: Path = LOCAL_SECRET_FILE) -> str:
    """The secret of `genvault dev` in this directory, created (random, 0600) on first use."""
    existing = read_local_secret(path)
    if existing is not None:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)  # 43 characters, 256 random bits
    # O_EXCL: two `genvault dev` starting at once must not each write a different secret.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_local_secret(path) or value
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


def settings_for_local_cli(**overrides: Any) -> Settings:
    """Settings for a command typed beside `genvault dev`: its secret when none is set."""
    settings = load_settings(require_secrets=False, **overrides)
    if settings.secret_key is None and (found := read_local_secret()) is not None:
        settings = load_settings(require_secrets=False, **{**overrides, "secret_key": found})
    return settings
