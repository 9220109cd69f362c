"""Behaviour switches: the sandbox's configuration and the ``[sandbox:…]`` prompt markers.

A prompt may carry markers such as ``[sandbox:processing]``, ``[sandbox:eta=0.5]`` or, several
in one, ``[sandbox:fail,messege]``. They are applied over the modes the sandbox was created
with, so one running sandbox can play every documented provider behaviour. ``fail`` fails
every generation, ``fail=N`` the first N with that prompt (ModelsLab's "Failed, Try Again",
which trying again may cure).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

_MARKER = re.compile(r"\[sandbox:([^\]]*)\]")

# Marker name → (Modes field, converter for ``name=value``). A flag without a value is True.
_FLAGS: dict[str, str] = {
    "processing": "processing",
    "processing400": "processing_400",
    "webhook-late": "webhook_late",
    "webhook-twice": "webhook_twice",
    "webhook-never": "webhook_never",
    "fail": "fail",
    "error": "error",
    "base64": "base64",
    "proxy-object": "proxy_object",
    "output-empty-string": "output_empty_string",
    "messege": "messege",
    "id-string": "id_string",
    "id-null": "id_null",
    "images-shape": "images_shape",
    "b64": "b64",
}
_VALUED: dict[str, tuple[str, Callable[[str], Any]]] = {
    "eta": ("eta", float),
    "webhook-delay": ("webhook_delay", float),
    "ratelimit": ("ratelimit", int),
    # ``fail=N``: the first N generations with this prompt fail, later ones succeed.
    "fail": ("fail_first", int),
    "retry-after": ("retry_after", int),
}
# ``[sandbox:ratelimit]`` alone limits the first attempt only.
_VALUE_DEFAULTS: dict[str, str] = {"ratelimit": "1"}

MARKERS: tuple[str, ...] = (*_FLAGS, *(f"{name}=N" for name in _VALUED))


class ModeError(ValueError):
    """A ``[sandbox:…]`` marker the sandbox does not know, or with a bad value."""


@dataclass(frozen=True)
class Modes:
    """The behaviour switches in force for one request."""

    processing: bool = False
    processing_400: bool = False
    eta: float | None = None
    webhook_delay: float | None = None
    webhook_late: bool = False
    webhook_twice: bool = False
    webhook_never: bool = False
    fail: bool = False
    fail_first: int = 0
    error: bool = False
    ratelimit: int = 0
    retry_after: int | None = None
    base64: bool = False
    proxy_object: bool = False
    output_empty_string: bool = False
    messege: bool = False
    id_string: bool = False
    id_null: bool = False
    images_shape: bool = False
    b64: bool = False

    @property
    def deferred(self) -> bool:
        """The submit answers ``processing`` and the result is ready only after the eta."""
        return self.processing or self.processing_400 or self.fail

    def with_markers(self, markers: Iterable[str]) -> Modes:
        """These modes with ``markers`` (``"fail"``, ``"eta=0.5"``) applied over them."""
        changes: dict[str, Any] = {}
        for marker in markers:
            name, _, value = marker.strip().partition("=")
            name = name.strip().lower()
            if not name:
                continue
            if name in _FLAGS and not value:
                changes[_FLAGS[name]] = True
            elif name in _VALUED:
                field, convert = _VALUED[name]
                raw = value.strip() or _VALUE_DEFAULTS.get(name, "")
                try:
                    converted = convert(raw)
                except ValueError:
                    raise ModeError(
                        f"sandbox marker {name!r} needs a number, got {raw!r}"
                    ) from None
                if converted < 0:
                    raise ModeError(f"sandbox marker {name!r} must not be negative")
                changes[field] = converted
            else:
                raise ModeError(f"unknown sandbox marker {marker.strip()!r}")
        return dataclasses.replace(self, **changes)

    def with_prompt(self, prompt: str) -> Modes:
        """These modes with the prompt's ``[sandbox:…]`` markers applied over them."""
        return self.with_markers(markers_in(prompt))


def markers_in(prompt: str) -> list[str]:
    """Every marker of every ``[sandbox:…]`` group in ``prompt``, in order."""
    return [part for group in _MARKER.findall(prompt) for part in group.split(",")]


@dataclass(frozen=True)
class SandboxConfig:
    """How a sandbox instance behaves when a prompt says nothing else.

    ``modes`` uses the marker syntax without brackets, e.g. ``("processing", "eta=2")``.
    Delays are in seconds. ``retry_after`` is what rate-limited answers advise; the real
    service says 30, which is too slow for a first run or a test.
    """

    webhook_delay: float = 0.2
    late_webhook_delay: float = 3.0
    eta: float = 1.0
    retry_after: int = 1
    webhook_timeout: float = 10.0
    modes: tuple[str, ...] = ()
    default_modes: Modes = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Parse once so a typo in the configuration fails at start, not on the first request.
        object.__setattr__(self, "default_modes", Modes().with_markers(self.modes))

    def modes_for(self, prompt: str) -> Modes:
        """The modes for a request with this prompt. Raises ModeError on a bad marker."""
        return self.default_modes.with_prompt(prompt)

    def eta_for(self, modes: Modes) -> float:
        return self.eta if modes.eta is None else modes.eta

    def retry_after_for(self, modes: Modes) -> int:
        return self.retry_after if modes.retry_after is None else modes.retry_after

    def webhook_delay_for(self, modes: Modes) -> float | None:
        """Seconds from a result being ready to its webhook; None when none is sent."""
        if modes.webhook_never:
            return None
        if modes.webhook_delay is not None:
            return modes.webhook_delay
        return self.late_webhook_delay if modes.webhook_late else self.webhook_delay
