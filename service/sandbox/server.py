"""Running the sandbox: blocking for ``genvault sandbox``, in a thread for dev and tests."""

from __future__ import annotations

import logging
import threading

from werkzeug.serving import BaseWSGIServer, make_server

from service.sandbox.app import make_sandbox_app, sandbox_state
from service.sandbox.modes import SandboxConfig

log = logging.getLogger(__name__)

# How often the serving loop checks for shutdown(); short, so tests and `genvault dev` stop fast.
_POLL_INTERVAL = 0.1


class SandboxServer:
    """A sandbox bound to ``host:port`` (port 0 picks a free one), not yet serving."""

    def __init__(self, host: str, port: int, config: SandboxConfig | None = None) -> None:
        self.app = make_sandbox_app(config)
        self._server: BaseWSGIServer = make_server(host, port, self.app, threaded=True)
        self._serving = threading.Event()

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def modelslab_base_url(self) -> str:
        """What to set as ``MODELSLAB_BASE_URL``."""
        return f"{self.url}/api"

    @property
    def aimlapi_base_url(self) -> str:
        """What to set as ``AIMLAPI_BASE_URL``."""
        return f"{self.url}/aimlapi"

    def serve_forever(self) -> None:
        self._serving.set()
        try:
            self._server.serve_forever(poll_interval=_POLL_INTERVAL)
        finally:
            self._serving.clear()

    def shutdown(self) -> None:
        """Cancel webhooks not yet sent, stop serving and free the port."""
        # Webhooks first: stopping the server takes up to a poll interval, and a stopped
        # sandbox must not call anyone afterwards.
        sandbox_state(self.app).close()
        # socketserver's shutdown() waits for a serve_forever() loop, so only ask a running one.
        if self._serving.is_set():
            self._server.shutdown()
        self._server.server_close()


def serve(host: str, port: int, config: SandboxConfig | None = None) -> None:
    """Serve the sandbox until interrupted."""
    server = SandboxServer(host, port, config)
    log.info("sandbox listening on %s", server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


def start_in_thread(
    host: str = "127.0.0.1", port: int = 0, config: SandboxConfig | None = None
) -> tuple[SandboxServer, threading.Thread]:
    """Start a sandbox in a daemon thread; call ``server.shutdown()`` to stop it."""
    server = SandboxServer(host, port, config)
    thread = threading.Thread(target=server.serve_forever, name="sandbox", daemon=True)
    thread.start()
    return server, thread
