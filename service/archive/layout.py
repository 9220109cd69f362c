"""Where things live in the archive (the layout of the public contract)."""

from __future__ import annotations

from datetime import datetime


def job_prefix(created_at: datetime, job_id: str, *, quarantine: bool = False) -> str:
    base = f"{created_at:%Y/%m/%d}/{job_id}"
    return f"quarantine/{base}" if quarantine else base


def output_key(
    created_at: datetime, job_id: str, index: int, ext: str, *, quarantine: bool = False
) -> str:
    return f"{job_prefix(created_at, job_id, quarantine=quarantine)}/{index}.{ext}"


def input_key(created_at: datetime, job_id: str, index: int, ext: str) -> str:
    return f"{job_prefix(created_at, job_id)}/inputs/{index}.{ext}"


def manifest_key(created_at: datetime, job_id: str) -> str:
    return f"{job_prefix(created_at, job_id)}/manifest.json"


def thumb_key(created_at: datetime, job_id: str, index: int) -> str:
    """A derived preview of output ``index``, beside the outputs (listed as ``derived``)."""
    return f"{job_prefix(created_at, job_id)}/thumbs/{index}.webp"
