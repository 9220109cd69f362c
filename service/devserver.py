"""`genvault dev`: the whole service on one machine for a first run.

Migrates a SQLite database under var/, starts the sandbox provider, an embedded worker and
the web server, and prints where to send requests. Loopback only: it uses a fixed dev
token, which is fine for a laptop and wrong for anything else, and a random secret key kept
in var/dev-secret-key (service/security/local_secret.py). Dev mode is not a setting: these
credentials are passed in here and nowhere else, so no environment variable can make
`gunicorn … create_app()` accept the dev token.
"""

from __future__ import annotations

import ipaddress
import logging
import threading

from werkzeug.serving import make_server

from service.app import create_app
from service.config import DEV_API_TOKEN, KNOWN_OUTPUT_HOSTS, load_settings
from service.db.migrate import upgrade
from service.logs import configure
from service.security.local_secret import local_secret
from service.wiring import build

log = logging.getLogger(__name__)


def run_dev(host: str, port: int, sandbox_port: int) -> int:
    from service.sandbox.server import start_in_thread

    sandbox = f"http://127.0.0.1:{sandbox_port}"
    settings = load_settings(
        secret_key=local_secret(),
        api_tokens=(DEV_API_TOKEN,),
        public_url=f"http://{host}:{port}",
        modelslab_base_url=f"{sandbox}/api",
        aimlapi_base_url=f"{sandbox}/aimlapi",
        modelslab_api_key="sandbox-key",
        modelslab_enterprise_api_key="sandbox-enterprise-key",
        aimlapi_api_key="sandbox-key",
        # The sandbox serves its images from loopback, which is otherwise never fetched.
        download_allowed_networks=(
            ipaddress.ip_network("127.0.0.0/8"),
            ipaddress.ip_network("::1/128"),
        ),
        download_allowed_hosts=(*KNOWN_OUTPUT_HOSTS, "127.0.0.1", "localhost"),
        worker_poll_interval=0.5,
        # `genvault listen` receives events on loopback.
        events_allowed_networks=(
            ipaddress.ip_network("127.0.0.0/8"),
            ipaddress.ip_network("::1/128"),
        ),
    )
    configure(settings.log_level, settings.log_json)
    container = build(settings)
    upgrade(container.db.engine)

    sandbox_server, _ = start_in_thread("127.0.0.1", sandbox_port)
    worker = container.worker(concurrency=2)
    worker_thread = threading.Thread(target=worker.run, name="worker", daemon=True)
    worker_thread.start()
    web = make_server(host, port, create_app(container=container), threaded=True)

    token = settings.api_tokens[0].get_secret_value()
    print(
        f"\ngenvault dev is running\n"
        f"  API        http://{host}:{port}   (token: {token})\n"
        f"  dashboard  http://{host}:{port}/ui/   (sign in with the token)\n"
        f"  sandbox    {sandbox}   (the provider, simulated)\n"
        f"  database   {settings.database_url}\n"
        f"  archive    {settings.archive_url}\n"
        f"Press Ctrl-C to stop.\n",
        flush=True,
    )
    try:
        web.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        web.server_close()
        worker.stop()
        worker_thread.join(timeout=30)
        sandbox_server.shutdown()
        container.close()
    return 0
