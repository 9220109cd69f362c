"""Faults through real processes: S3 cut (connections refused) and hung mid-burst.

The scenarios and their invariant are those of test_outage.py (its burst and defaults); they
live in a file of their own so that the suite's workers run them beside the database ones.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest

from tests.support.faults import DEFAULTS, assert_invariant, mid_burst, report, wait_all_final
from tests.support.stack import Stack
from tests.support.tcpproxy import TcpProxy

pytestmark = [pytest.mark.e2e]

S3_OUTAGE = float(os.environ.get("GENVAULT_FAULT_S3_SECONDS", "10"))  # 30: the issue's


@pytest.fixture
def s3_proxy(s3_endpoint: str) -> Iterator[TcpProxy]:
    host, port = s3_endpoint.removeprefix("http://").split(":")
    with TcpProxy(host, int(port)) as proxy:
        yield proxy


@pytest.mark.timeout(150)
@pytest.mark.parametrize("fault", ["refused", "hung"])
def test_s3_cut_mid_burst(
    fault: str, s3_proxy: TcpProxy, stack_factory: Callable[..., Stack]
) -> None:
    stack = stack_factory(AWS_ENDPOINT_URL_S3=s3_proxy.url, **DEFAULTS)
    burst = mid_burst(stack)
    began = time.monotonic()
    if fault == "refused":
        s3_proxy.refuse()
    else:
        s3_proxy.hang()
    time.sleep(S3_OUTAGE)
    s3_proxy.heal()
    ended = time.monotonic()
    jobs = burst.finish()
    recovered = wait_all_final(stack, jobs, timeout=90) - ended
    assert_invariant(stack, jobs)
    report(f"S3 {fault}", len(jobs), ended - began, recovered)
    assert recovered <= 60, recovered
