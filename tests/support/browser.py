"""Headless Chromium for the dashboard tests: Playwright driving Debian's `chromium`.

Playwright's own browser download is not reachable from these machines, so the system
browser is passed as ``executable_path``. Without one the tests skip with the reason, except
when GENVAULT_REQUIRE_BROWSER is set (CI), where they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

ARGS = [
    "--no-sandbox",  # root in CI containers cannot use Chromium's sandbox
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _unavailable(reason: str) -> None:
    if os.environ.get("GENVAULT_REQUIRE_BROWSER"):
        pytest.fail(f"browser tests are required here (GENVAULT_REQUIRE_BROWSER): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
        return
    executable = os.environ.get("GENVAULT_CHROMIUM") or shutil.which("chromium")
    if not executable:
        _unavailable("no chromium on PATH (apt-get install chromium, or set GENVAULT_CHROMIUM)")
        return
    with sync_playwright() as playwright:
        try:
            instance = playwright.chromium.launch(executable_path=executable, args=ARGS)
        except Error as exc:
            _unavailable(f"chromium at {executable} did not start: {exc.message.splitlines()[0]}")
            return
        try:
            yield instance
        finally:
            instance.close()
