"""A provider simulator that speaks the ModelsLab and AI/ML API shapes of PROVIDERS.md.

Behaviour is chosen per request by ``[sandbox:…]`` markers in the prompt (see ``modes``) or
for a whole instance by ``SandboxConfig.modes``.
"""

from service.sandbox.app import make_sandbox_app
from service.sandbox.modes import MARKERS, ModeError, Modes, SandboxConfig
from service.sandbox.server import SandboxServer, serve, start_in_thread

__all__ = [
    "MARKERS",
    "ModeError",
    "Modes",
    "SandboxConfig",
    "SandboxServer",
    "make_sandbox_app",
    "serve",
    "start_in_thread",
]
