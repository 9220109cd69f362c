"""The real thing, as processes: migrate, gunicorn, `genvault worker`, `genvault sandbox`.

Everything listens on loopback. The S3 endpoint is moto's server (tests.support.s3).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.s3 import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TOKEN = "e2e-token"
SECRET = "e2e-secret-0123456789abcdef0123456789"


@dataclass
class Stack:
    web_url: str
    sandbox_url: str
    env: dict[str, str]
    bucket: str
    prefix: str
    logs: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def submit(self, endpoint: str, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
        r = requests.post(
            f"{self.web_url}/v1/jobs",
            json={"endpoint": endpoint, "params": params, **extra},
            headers=self.auth,
            timeout=10,
        )
        assert r.status_code == 202, r.text
        return r.json()  # type: ignore[no-any-return]

    def job(self, job_id: str) -> dict[str, Any]:
        r = requests.get(f"{self.web_url}/v1/jobs/{job_id}", headers=self.auth, timeout=10)
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def wait(
        self, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        job = self.job(job_id)
        while not until(job):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; job is {job}\n{self.tail_logs()}")
            time.sleep(0.1)
            job = self.job(job_id)
        return job

    def wait_status(self, job_id: str, *statuses: str, timeout: float = 60) -> dict[str, Any]:
        return self.wait(job_id, lambda j: j["status"] in statuses, timeout)

    def start_worker(self, name: str = "worker") -> subprocess.Popen[bytes]:
        return self._spawn(name, [str(BIN / "genvault"), "worker"])

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        # The child keeps its own copy of the descriptor; ours can close at once.
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def tail_logs(self, lines: int = 40) -> str:
        out = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _wait_http(url: str, proc: subprocess.Popen[bytes], stack: Stack, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited with {proc.returncode}\n{stack.tail_logs()}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass  # not listening yet, or busy starting
        time.sleep(0.1)
    raise AssertionError(f"{url} did not come up\n{stack.tail_logs()}")


def start_stack(
    tmp_path: Path,
    s3_endpoint: str,
    bucket: str,
    database_url: str,
    workers: int = 1,
    **env_overrides: str,
) -> Stack:
    web_port, sandbox_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GENVAULT_", "MODELSLAB_", "AIMLAPI_"))
    }
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "GENVAULT_DATABASE_URL": database_url,
            "GENVAULT_ARCHIVE_URL": f"s3://{bucket}/archive",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": s3_endpoint,
            "GENVAULT_PUBLIC_URL": f"http://127.0.0.1:{web_port}",
            "GENVAULT_BIND": f"127.0.0.1:{web_port}",
            "WEB_CONCURRENCY": "2",
            "GENVAULT_SECRET_KEY": SECRET,
            "GENVAULT_API_TOKENS": f"other-token,{TOKEN}",
            "MODELSLAB_BASE_URL": f"http://127.0.0.1:{sandbox_port}/api",
            "AIMLAPI_BASE_URL": f"http://127.0.0.1:{sandbox_port}/aimlapi",
            "MODELSLAB_API_KEY": "ml-e2e-key-secret",
            "MODELSLAB_ENTERPRISE_API_KEY": "ml-enterprise-e2e-key-secret",
            "AIMLAPI_API_KEY": "aiml-e2e-key-secret",
            # Only the sandbox's own address may be fetched although private.
            "GENVAULT_DOWNLOAD_ALLOWED_NETWORKS": "127.0.0.1/32",
            "GENVAULT_DOWNLOAD_ALLOWED_HOSTS": "127.0.0.1",
            "GENVAULT_WORKER_POLL_INTERVAL": "0.2",
            "GENVAULT_POLL_GRACE_SECONDS": "0.5",
            "GENVAULT_RETRY_BASE_SECONDS": "0.2",
            "GENVAULT_RECONCILE_INTERVAL_SECONDS": "1",
            "GENVAULT_LOG_JSON": "true",
        }
    )
    env.update(env_overrides)
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    stack = Stack(
        f"http://127.0.0.1:{web_port}",
        f"http://127.0.0.1:{sandbox_port}",
        env,
        bucket,
        "archive",
        logs,
    )
    try:
        migrate = subprocess.run(
            [str(BIN / "genvault"), "migrate"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stderr.decode()
        sandbox = stack._spawn(
            "sandbox", [str(BIN / "genvault"), "sandbox", "--port", str(sandbox_port)]
        )
        _wait_http(f"{stack.sandbox_url}/healthz", sandbox, stack)
        web = stack._spawn(
            "web",
            [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "service.app:create_app()"],
        )
        _wait_http(f"{stack.web_url}/healthz", web, stack)
        for i in range(workers):
            stack.start_worker(f"worker{i}")
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture
def stack_factory(
    tmp_path: Path, s3_endpoint: str, s3_bucket: str
) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def make(database_url: str | None = None, **kw: Any) -> Stack:
        url = database_url or f"sqlite:///{tmp_path / 'genvault.db'}"
        stack = start_stack(tmp_path, s3_endpoint, s3_bucket, url, **kw)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()
