"""How a request reaches the wired-up service: the Container stored on the Flask app."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from flask import current_app

if TYPE_CHECKING:
    from service.wiring import Container

EXTENSION = "genvault"


def container() -> Container:
    return cast("Container", current_app.extensions[EXTENSION])
