"""The mock is fast enough not to be the benchmarks' bottleneck (generous bounds for CI)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bulkstop.mockcloud import MockCloud, MockConfig

SEED_100K_SECONDS = 10.0
PAGE_SECONDS = 1.0


@pytest.mark.slow
async def test_100k_servers_and_1000_record_pages(
    make_mock_cloud: Callable[..., Awaitable[MockCloud]],
    mock_client: Callable[..., Awaitable[Any]],
) -> None:
    started = time.perf_counter()
    mock = await make_mock_cloud(MockConfig(servers=100_000, projects=4, seed=1))
    assert time.perf_counter() - started < SEED_100K_SECONDS  # about 1 s here
    client = await mock_client(mock)
    started = time.perf_counter()
    answer = await client.get("/servers/detail?tags=nightly-stop")
    assert time.perf_counter() - started < PAGE_SECONDS  # tens of ms here
    assert len(answer.json["servers"]) == 1000
    assert "servers_links" in answer.json
