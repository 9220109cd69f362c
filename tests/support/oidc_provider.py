"""A test-only OpenID Connect provider in a process of its own: tests/support/oidc/server.mjs.

It is node-oidc-provider (pinned in tests/support/oidc/package-lock.json) with a minimal login
page, so a test can log in as any of ``users`` (by default DEFAULT_USERS) with a password,
and the ID token carries ``groups``::

    reason = node_available()
    if reason:
        pytest.skip(reason)
    ensure_node_modules()
    with OidcProvider(tmp_path, redirect_uris=["http://127.0.0.1:5000/ui/auth/callback"]) as op:
        op.issuer  # http://127.0.0.1:PORT, its discovery at op.discovery_url
        op.restart()  # same issuer, a new signing key (new kid); sessions and grants are gone

The provider keeps everything in memory; a restart forgets sessions, grants and codes.
Its pages, for a browser test: ``GET /interaction/<uid>`` is the login form (inputs named and
id'd ``username`` and ``password``, button id ``submit``), posting to
``/interaction/<uid>/login``; a wrong password answers 401 with the form again and an element
id ``error``. Consent is granted without a page. ``/interaction/<uid>/abort`` (link id
``abort``) ends the flow with ``error=access_denied``. Logout (``end_session_endpoint``) shows
buttons id ``logout-yes`` / ``logout-no``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

OIDC_DIR = Path(__file__).resolve().parent / "oidc"
SERVER = OIDC_DIR / "server.mjs"
LOCKFILE = OIDC_DIR / "package-lock.json"
NODE_MODULES = OIDC_DIR / "node_modules"
MIN_NODE_MAJOR = 18
READY_TIMEOUT = 20.0

AUTH_METHODS = ("client_secret_basic", "client_secret_post")


class OidcProviderUnavailable(RuntimeError):
    """The provider cannot be installed or run here (npm ci failed, node missing)."""


@dataclass(frozen=True)
class OidcUser:
    username: str
    password: str
    email: str
    name: str
    groups: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "password": self.password,
            "email": self.email,
            "name": self.name,
            "groups": list(self.groups),
        }


def _user(username: str, name: str, *groups: str) -> OidcUser:
    return OidcUser(username, f"pw-{username}", f"{username}@example.test", name, groups)


DEFAULT_USERS: tuple[OidcUser, ...] = (
    _user("admin", "Ada Admin", "genvault-admins"),
    _user("operator", "Otto Operator", "genvault-operators"),
    _user("viewer", "Vera Viewer", "genvault-viewers"),
    _user("nobody", "Nora Nobody"),
)

DEFAULT_CLIENT_ID = "genvault"
DEFAULT_CLIENT_SECRET = "genvault-test-client-secret"  # a test fixture's, never a real one


def node_available() -> str | None:
    """Why the provider cannot run here (a skip reason), or None when node and npm are usable."""
    node = shutil.which("node")
    if node is None:
        return "node is not installed (the test OIDC provider runs on Node.js)"
    if shutil.which("npm") is None and not NODE_MODULES.is_dir():
        return "npm is not installed (needed once to install tests/support/oidc/node_modules)"
    try:
        version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        major = int(version.lstrip("v").split(".")[0])
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return f"node --version failed: {exc}"
    if major < MIN_NODE_MAJOR:
        return f"node {version} is too old for oidc-provider (needs >= {MIN_NODE_MAJOR})"
    return None


def _installed_at() -> float | None:
    marker = NODE_MODULES / ".package-lock.json"  # npm rewrites it on every install
    for path in (marker, NODE_MODULES):
        try:
            return path.stat().st_mtime
        except FileNotFoundError:
            continue
    return None


def _needs_install() -> bool:
    installed = _installed_at()
    return installed is None or installed < LOCKFILE.stat().st_mtime


def ensure_node_modules(timeout: float = 300) -> None:
    """``npm ci`` in tests/support/oidc when node_modules is missing or older than the lockfile.

    Raises OidcProviderUnavailable (with npm's output) when the install fails.
    """
    if not _needs_install():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise OidcProviderUnavailable("npm is not installed; cannot install the OIDC provider")
    # Several pytest processes may get here at once: the lock on the lockfile serialises them.
    with LOCKFILE.open("rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not _needs_install():
                return
            try:
                done = subprocess.run(
                    [npm, "ci", "--no-audit", "--no-fund"],
                    cwd=OIDC_DIR,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise OidcProviderUnavailable(f"npm ci timed out after {timeout} s") from exc
            if done.returncode != 0:
                raise OidcProviderUnavailable(
                    f"npm ci in {OIDC_DIR} failed ({done.returncode}):\n"
                    f"{done.stdout[-2000:]}{done.stderr[-4000:]}"
                )
            (NODE_MODULES / ".package-lock.json").touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class OidcProvider:
    """The test provider as a child process; its settings are read again at every start().

    ``users`` are OidcUser or the JSON shape {username, password, email, name, groups}.
    ``extra_clients`` are more clients in oidc-provider's metadata shape (client_id,
    client_secret, redirect_uris, token_endpoint_auth_method, ...).
    """

    workdir: Path | str
    port: int | None = None
    users: Iterable[OidcUser | Mapping[str, Any]] = DEFAULT_USERS
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    redirect_uris: Sequence[str] = ("http://127.0.0.1/callback",)
    post_logout_redirect_uris: Sequence[str] = ()
    token_endpoint_auth_method: str = "client_secret_basic"
    extra_clients: Sequence[Mapping[str, Any]] = ()
    keys_file: Path | str | None = None  # a fixed JWKS instead of a fresh key per start
    ready_timeout: float = READY_TIMEOUT
    node: str = "node"
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _starts: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        if self.token_endpoint_auth_method not in AUTH_METHODS:
            raise ValueError(f"token_endpoint_auth_method must be one of {AUTH_METHODS}")
        self.users = tuple(self.users)

    # -- addresses ----------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        if self.port is None:
            raise RuntimeError("the provider has no port until start()")
        return f"http://127.0.0.1:{self.port}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def config_path(self) -> Path:
        return Path(self.workdir) / "oidc-provider.json"

    @property
    def log_path(self) -> Path:
        return Path(self.workdir) / "oidc-provider.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def user(self, username: str) -> OidcUser:
        for user in self.users:
            if isinstance(user, OidcUser) and user.username == username:
                return user
            if isinstance(user, Mapping) and user.get("username") == username:
                return OidcUser(
                    user["username"],
                    user["password"],
                    user.get("email", ""),
                    user.get("name", ""),
                    tuple(user.get("groups", ())),
                )
        raise KeyError(username)

    # -- lifecycle ----------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        client: dict[str, Any] = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uris": list(self.redirect_uris),
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
        }
        if self.post_logout_redirect_uris:
            client["post_logout_redirect_uris"] = list(self.post_logout_redirect_uris)
        return {
            "port": self.port,
            "clients": [client, *(dict(extra) for extra in self.extra_clients)],
            "users": [u.as_json() if isinstance(u, OidcUser) else dict(u) for u in self.users],
            **({"keys_file": str(self.keys_file)} if self.keys_file else {}),
        }

    def start(self) -> Self:
        if self.running:
            raise RuntimeError("the provider is already running")
        workdir = Path(self.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port()
        self.config_path.write_text(json.dumps(self.config(), indent=2))
        self._starts += 1
        out_path = workdir / f"oidc-provider.{self._starts}.out"
        with out_path.open("wb") as out, self.log_path.open("ab") as log:
            log.write(f"--- start {self._starts} on port {self.port}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                [self.node, str(SERVER), "--config", str(self.config_path)],
                cwd=OIDC_DIR,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=log,
                env={**os.environ, "NODE_ENV": "test", "DEBUG": ""},
            )
        try:
            self._wait_ready(out_path)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, out_path: Path) -> None:
        assert self._proc is not None
        expected = f"READY {self.issuer}"
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if expected in out_path.read_text(errors="replace").splitlines():
                return
            code = self._proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"the OIDC provider exited with {code} before it was ready:\n{self.logs()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the OIDC provider was not ready within {self.ready_timeout} s:\n{self.logs()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)

    def restart(self) -> Self:
        """Stop and start on the same port: same issuer, a new signing key, empty memory."""
        self.stop()
        return self.start()

    def logs(self, limit: int = 6000) -> str:
        """The provider's stderr (all starts), its last ``limit`` characters."""
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
