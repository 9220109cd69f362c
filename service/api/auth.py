"""Bearer-token authentication for /v1."""

from __future__ import annotations

import hmac

from flask import request

from service.api.context import container
from service.errors import Unauthorized


def require_token() -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized()
    given = token.strip().encode()
    # Compare against every token so the time taken does not tell which one nearly matched.
    matched = False
    for candidate in container().settings.api_tokens:
        matched |= hmac.compare_digest(candidate.get_secret_value().encode(), given)
    if not matched:
        raise Unauthorized()
