"""S3Store.url signs links itself (s3._Presigner): the very URLs botocore would write."""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import quote

import boto3
import botocore.auth
import botocore.compat
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st

from service.storage.base import StorageError
from service.storage.s3 import CLIENT_CONFIG, S3Store, _quote_path

FIXED = datetime.datetime(2026, 3, 4, 5, 6, 7)  # naive UTC, as botocore's clock answers
KEYS = [
    "a.png",
    "projects/default/0a1/b2c/d3e/urn%3agenvault%3ajob%3a0190abc/v1/content/0.png",
    "2026/01/02/job 1/0.png",
    "sp ace/ü/日本/+&=?#~!*'()$,;:@[]|^`{}\"<>\\",
    "a/../b/./c//d",
    "%41%",
    "",
]


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    def now(remove_tzinfo: bool = True) -> datetime.datetime:
        return FIXED if remove_tzinfo else FIXED.replace(tzinfo=datetime.UTC)

    monkeypatch.setattr(botocore.auth, "get_current_datetime", now)
    monkeypatch.setattr(botocore.compat, "get_current_datetime", now)


def _client(**options: Any) -> Any:
    config = CLIENT_CONFIG
    if "addressing" in options:
        config = config.merge(Config(s3={"addressing_style": options.pop("addressing")}))
    return boto3.client(
        "s3",
        config=config,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        **options,
    )


@pytest.mark.parametrize(
    ("bucket", "prefix", "options"),
    [
        # moto / MinIO: a custom endpoint, path style, a port
        ("bench", "archive", {"endpoint_url": "http://127.0.0.1:9", "region_name": "us-east-1"}),
        ("bench", "", {"endpoint_url": "https://minio.example:443/s3", "region_name": "eu-1"}),
        # AWS: virtual hosts, another region, a bucket name only path style can carry
        ("my-bucket", "genvault/prod", {"region_name": "eu-west-1"}),
        ("my-bucket", "a b/ü", {"region_name": "us-east-1"}),
        ("my.dotted.bucket", "", {"region_name": "ap-southeast-2"}),
        ("my-bucket", "", {"region_name": "eu-west-1", "addressing": "path"}),
        # temporary credentials: the security token is signed too
        ("my-bucket", "p", {"region_name": "eu-west-1", "aws_session_token": "tok/en+=="}),
    ],
)
def test_links_are_the_urls_botocore_writes(
    frozen_clock: None, bucket: str, prefix: str, options: dict[str, Any]
) -> None:
    store = S3Store(bucket, prefix, client=_client(**options))
    for expires in (600, 3600, 7 * 24 * 3600):
        for key in KEYS:
            assert _answer(store.url, key, expires) == _answer(store._botocore_url, key, expires)
    assert store._presigner is not None  # signed here, not by botocore


def _answer(presign: Any, key: str, expires: int) -> str:
    """The URL, or the error (an empty key, where there is no prefix, is refused)."""
    try:
        return str(presign(key, expires))
    except StorageError as exc:
        return f"refused: {exc}"


def test_links_change_with_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    store = S3Store("b", client=_client(region_name="us-east-1"))
    for moment in (FIXED, FIXED + datetime.timedelta(days=1, seconds=3)):
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, m=moment: m)
        monkeypatch.setattr(botocore.compat, "get_current_datetime", lambda *a, m=moment: m)
        assert store.url("x.png", 60) == store._botocore_url("x.png", 60)
        assert f"X-Amz-Date={moment:%Y%m%dT%H%M%SZ}" in store.url("x.png", 60)


def test_a_url_it_cannot_write_identically_is_left_to_botocore(frozen_clock: None) -> None:
    # Unsigned: botocore writes a bare URL, not one _Presigner writes.
    client = boto3.client("s3", config=Config(signature_version=UNSIGNED), region_name="eu-1")
    store = S3Store("b", client=client)
    url = store.url("x.png", 60)
    assert url == store._botocore_url("x.png", 60) and "X-Amz-Signature" not in url
    assert store._presigner is None


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_key_paths_are_encoded_as_urllib_encodes_them(key: str) -> None:
    assert _quote_path(key) == quote(key.encode(), safe="/~")


@pytest.mark.parametrize("key", [*KEYS, "".join(map(chr, range(128))), "a\x00b", "é/%7e"])
def test_key_paths_are_encoded_as_urllib_encodes_them_at_the_edges(key: str) -> None:
    assert _quote_path(key) == quote(key.encode(), safe="/~")
