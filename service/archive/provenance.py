"""Content Credentials (C2PA): what an output says about its own making, read when archived.

genvault stores images byte for byte, so credentials a provider embedded survive; this reads
them with the C2PA reference library (c2pa-python) and records what an archivist asks first:
are there any, do they verify, what made the image, and was it generated.

The validity rule: ``valid`` is true when c2pa's validation state is ``Valid`` or ``Trusted``
(the claim signature verifies and every hash, the image data's included, matches), false when
it is ``Invalid`` (a byte flipped in the image is ``assertion.dataHash.mismatch``). genvault
has no trust list, so a signing certificate from an unknown authority
(``signingCredential.untrusted``, which c2pa lists among the failures yet does not count
against ``Valid``) leaves credentials valid: trust is for the reader to decide, with the
certificate at hand. ``valid`` is null when they could not be checked (a reader error, or a
manifest kept at a remote URL, which is never fetched).

Credentials never fail an archive: whatever goes wrong here is logged and recorded as such.
"""

from __future__ import annotations

import logging
import mmap
from pathlib import Path
from typing import Any

import c2pa

log = logging.getLogger(__name__)

# Reading must not reach out: a remote manifest URL in an image is the image's author's choice
# of address (the downloader's SSRF rules never see it), and OCSP would leak what we archive.
_SETTINGS = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}

_ACCEPTED_STATES = {"Valid", "Trusted"}

# The UUID of the JUMBF box holding a C2PA manifest store ("c2pa" + ISO suffix): when the
# reader fails, whether the file holds one says whether credentials are present.
_STORE_UUID = bytes.fromhex("6332706100110010800000aa00389b71")

ABSENT: dict[str, Any] = {
    "present": False,
    "valid": None,
    "claim_generator": None,
    "digital_source_type": None,
}


def read_credentials(path: Path, content_type: str) -> dict[str, Any]:
    """``{present, valid, claim_generator, digital_source_type}`` of the image at ``path``."""
    try:
        with c2pa.Context.from_dict(_SETTINGS) as context, path.open("rb") as stream:
            reader = c2pa.Reader.try_create(content_type, stream, None, context)
            if reader is None:  # no manifest store: the common case, and a fast one
                return dict(ABSENT)
            with reader:
                state = reader.get_validation_state()
                manifest = reader.get_active_manifest() or {}
    except Exception as exc:  # noqa: BLE001 -- a library failure must never fail the archive
        # A manifest kept at a remote URL (c2pa says "Remote…") is present, just not here.
        present = str(exc).startswith("Remote") or _holds_store(path)
        log.info(
            "content credentials not read",
            extra={"file": path.name, "error": f"{type(exc).__name__}: {exc}", "present": present},
        )
        return {**ABSENT, "present": present}
    return {
        "present": True,
        "valid": state in _ACCEPTED_STATES if state else None,
        "claim_generator": claim_generator(manifest),
        "digital_source_type": digital_source_type(manifest),
    }


def claim_generator(manifest: dict[str, Any]) -> str | None:
    """The claim's generator: v1's ``claim_generator`` string, else v2's first ``name/version``."""
    named = manifest.get("claim_generator")
    if isinstance(named, str) and named:
        return named
    for info in manifest.get("claim_generator_info") or []:
        if isinstance(info, dict) and info.get("name"):
            version = info.get("version")
            return f"{info['name']}/{version}" if version else str(info["name"])
    return None


def digital_source_type(manifest: dict[str, Any]) -> str | None:
    """The IPTC digitalSourceType URI of the first action that names one (c2pa.created's)."""
    for assertion in manifest.get("assertions") or []:
        label = str(assertion.get("label", "")).split("__", 1)[0]  # c2pa.actions__1: a 2nd one
        if label not in {"c2pa.actions", "c2pa.actions.v2"}:
            continue
        for action in (assertion.get("data") or {}).get("actions") or []:
            source = action.get("digitalSourceType") if isinstance(action, dict) else None
            if isinstance(source, str) and source:
                return source
    return None


def _holds_store(path: Path) -> bool:
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(_STORE_UUID) != -1
    except (OSError, ValueError):  # gone, or empty (mmap refuses a zero-length file)
        return False
