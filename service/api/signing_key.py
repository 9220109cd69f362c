"""GET /v1/signing-key: the public key that verifies manifest signatures."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from service.api.auth import require_token
from service.api.context import container

bp = Blueprint("signing_key", __name__, url_prefix="/v1")
bp.before_request(require_token)


@bp.get("/signing-key")
def signing_key() -> Response:
    """``{"algorithm": "Ed25519", "public_key": base64, "key_id": …}``."""
    return jsonify(container().archiver.signer.verifier.describe())
