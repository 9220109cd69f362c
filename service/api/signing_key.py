"""GET /v1/signing-key: the public key that verifies manifest signatures."""

from __future__ import annotations

from flask import Blueprint, Response

from service.access.scopes import Authenticated
from service.api import auth
from service.api.context import container
from service.api.input_guard import refuse_control_characters
from service.api.openapi import documented
from service.api.schemas import SigningKeyOut, respond

bp = Blueprint("signing_key", __name__, url_prefix="/v1")
bp.before_request(auth.guard)
bp.before_request(refuse_control_characters)


@bp.get("/signing-key")
@documented(
    "The public key that verifies manifest signatures",
    {200: SigningKeyOut},
    errors=(422,),
    scope=Authenticated.ANY,
)
def signing_key() -> tuple[Response, int]:
    """``{"algorithm": "Ed25519", "public_key": base64, "key_id": …}``."""
    return respond(SigningKeyOut.model_validate(container().archiver.signer.verifier.describe()))
