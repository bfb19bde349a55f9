"""Each injected fault, seen by a real HTTP client over loopback."""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import Awaitable, Callable
from typing import Any, Final

import aiohttp
import pytest

from bulkstop.mockcloud import FakeClock, Faults, MockCloud, MockConfig, Trigger

Make = Callable[..., Awaitable[MockCloud]]
Connect = Callable[..., Awaitable[Any]]

ALPHA: Final = "a" * 32
BETA: Final = "b" * 32
FLEET: Final = {
    "projects": [{"id": ALPHA, "name": "alpha"}, {"id": BETA, "name": "beta"}],
    "servers": [
        {"id": f"s-{i}", "name": f"web-{i}", "project": "alpha" if i < 20 else "beta"}
        for i in range(40)
    ],
}


async def faulty(make: Make, faults: Faults, **options: Any) -> MockCloud:
    return await make(MockConfig(fleet=FLEET, faults=faults, **options))


class TestLatency:
    """Fixed latency plus seeded jitter delays every compute answer."""

    async def test_answers_are_delayed(self, make_mock_cloud: Make, mock_client: Connect) -> None:
        mock = await faulty(make_mock_cloud, Faults(latency=0.05, jitter=0.02))
        client = await mock_client(mock, ALPHA)
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await client.get("/servers/s-1")
        elapsed = loop.time() - started
        assert answer.status == 200
        assert 0.05 <= elapsed < 0.5


class TestRateLimit:
    """A per-project token bucket answers 429 / 413 / APIG.0308 with Retry-After."""

    async def burst(self, client: Any, n: int) -> list[Any]:
        return [await client.get(f"/servers/s-{i}") for i in range(n)]

    async def test_429_with_retry_after_then_recovery(
        self, make_mock_cloud: Make, mock_client: Connect
    ) -> None:
        clock = FakeClock()
        mock = await faulty(make_mock_cloud, Faults(rate_limit=2, burst=2), clock=clock)
        client = await mock_client(mock, ALPHA)
        answers = await self.burst(client, 3)
        assert [a.status for a in answers] == [200, 200, 429]
        throttled = answers[-1]
        assert throttled.headers["Retry-After"] == "1"
        assert throttled.json == {
            "overLimit": {
                "code": 429,
                "message": "This request was rate-limited.",
                "retryAfter": "1",
            }
        }
        assert mock.requests[-1].fault == "throttle"
        clock.advance(0.5)
        assert (await client.get("/servers/s-1")).status == 200
        # Keystone is never throttled.
        for _ in range(5):
            await mock_client(mock, ALPHA)

    async def test_buckets_are_per_project_and_configurable(
        self, make_mock_cloud: Make, mock_client: Connect
    ) -> None:
        clock = FakeClock()
        mock = await make_mock_cloud(
            MockConfig(
                fleet=FLEET,
                clock=clock,
                project_faults={"beta": Faults(rate_limit=1, throttle="apig")},
            )
        )
        alpha = await mock_client(mock, ALPHA)
        assert {a.status for a in await self.burst(alpha, 5)} == {200}
        beta = await mock_client(mock, BETA)
        answers = [await beta.get(f"/servers/s-{i}") for i in (20, 21)]
        assert [a.status for a in answers] == [200, 429]
        body = answers[1].json
        assert body["error_code"] == "APIG.0308"
        assert "limit:1,time:1 second" in body["error_msg"]

    async def test_legacy_413_with_http_date(
        self, make_mock_cloud: Make, mock_client: Connect
    ) -> None:
        faults = Faults(rate_limit=1, throttle="413", retry_after="date")
        mock = await faulty(make_mock_cloud, faults, clock=FakeClock())
        answers = await self.burst(await mock_client(mock, ALPHA), 2)
        assert answers[1].status == 413
        assert answers[1].json["overLimit"]["code"] == 413
        assert email.utils.parsedate_to_datetime(answers[1].headers["Retry-After"])


class TestServerErrors:
    """5xx at a seeded rate, or for named servers' first K actions."""

    async def statuses(self, make: Make, connect: Connect) -> list[int]:
        mock = await faulty(make, Faults(server_error=Trigger(rate=0.3)), seed=5)
        client = await connect(mock, ALPHA)
        return [(await client.get(f"/servers/s-{i}")).status for i in range(20)]

    async def test_rate_is_seeded(self, make_mock_cloud: Make, mock_client: Connect) -> None:
        first = await self.statuses(make_mock_cloud, mock_client)
        second = await self.statuses(make_mock_cloud, mock_client)
        assert first == second
        assert set(first) == {200, 500}

    async def test_first_k_attempts_of_named_servers(
        self, make_mock_cloud: Make, mock_client: Connect
    ) -> None:
        faults = Faults(server_error=Trigger(servers={"s-3": 2}), error_status=503)
        mock = await faulty(make_mock_cloud, faults)
        client = await mock_client(mock, ALPHA)
        answers = [await client.action("s-3") for _ in range(3)]
        assert [a.status for a in answers] == [503, 503, 202]
        assert answers[0].json == {
            "serviceUnavailable": {"code": 503, "message": "Service Unavailable"}
        }
        assert (await client.action("s-4")).status == 202
        assert mock.accepted_stops() == {"s-3": 1, "s-4": 1}

    async def test_nova_500_body(self, make_mock_cloud: Make, mock_client: Connect) -> None:
        mock = await faulty(make_mock_cloud, Faults(server_error=Trigger(rate=1.0)))
        answer = await (await mock_client(mock, ALPHA)).action("s-1")
        assert answer.status == 500
        assert answer.json["computeFault"]["message"].startswith("Unexpected API Error.")
        assert mock.servers["s-1"].task_state is None  # nothing was done


class TestConnectionReset:
    """The connection is dropped without an answer."""

    async def test_client_sees_a_broken_connection(
        self, make_mock_cloud: Make, mock_client: Connect
    ) -> None:
        mock = await faulty(make_mock_cloud, Faults(reset=Trigger(servers={"s-1": 1})))
        client = await mock_client(mock, ALPHA)
        with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
            await client.action("s-1")
        record = mock.requests[-1]
        assert (record.status, record.fault, record.server_id) == (None, "reset", "s-1")
        assert mock.servers["s-1"].task_state is None  # the stop never reached Nova
        assert (await client.action("s-1")).status == 202  # and the next attempt passes


class TestHtmlErrorPage:
    """A proxy answers with HTML instead of JSON."""

    async def test_bad_gateway_page(self, make_mock_cloud: Make, mock_client: Connect) -> None:
        mock = await faulty(make_mock_cloud, Faults(html=Trigger(rate=1.0), html_status=503))
        answer = await (await mock_client(mock, ALPHA)).get("/servers")
        assert answer.status == 503
        assert answer.headers["Content-Type"].startswith("text/html")
        assert "<title>503 Service Unavailable</title>" in answer.text
        assert mock.requests[-1].fault == "html"


class TestSlowAnswer:
    """An answer slower than the client's timeout; the stop itself is applied."""

    async def test_client_times_out_but_the_stop_happened(
        self, make_mock_cloud: Make, mock_client: Connect
    ) -> None:
        faults = Faults(slow=Trigger(servers={"s-1": 1}), slow_delay=30.0)
        mock = await faulty(make_mock_cloud, faults, transition_delay=0.0)
        client = await mock_client(mock, ALPHA)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await client.action("s-1")
        assert mock.servers["s-1"].status == "SHUTOFF"
        record = next(r for r in mock.requests if r.kind == "action")
        assert (record.status, record.fault) == (202, "slow")
        # The client's retry learns that the first attempt went through.
        retry = await client.action("s-1")
        assert retry.status == 409
        assert mock.accepted_stops() == {"s-1": 1}


class TestRace:
    """Someone else stops the server between our listing and our stop."""

    async def test_stop_finds_the_server_already_stopping(
        self, make_mock_cloud: Make, mock_client: Connect
    ) -> None:
        clock = FakeClock()
        faults = Faults(race=Trigger(servers={"s-2": 1}))
        mock = await faulty(make_mock_cloud, faults, clock=clock, transition_delay=1.0)
        client = await mock_client(mock, ALPHA)
        listed = (await client.get("/servers/detail")).json["servers"]
        assert next(s for s in listed if s["id"] == "s-2")["status"] == "ACTIVE"
        answer = await client.action("s-2")
        assert answer.status == 409
        assert answer.json["conflictingRequest"]["message"].endswith("task_state powering-off")
        assert mock.requests[-1].fault == "race"
        clock.advance(1.0)
        assert (await client.get("/servers/s-2")).json["server"]["status"] == "SHUTOFF"
        assert mock.accepted_stops() == {}


class TestTokenExpiry:
    """token_ttl: a token dies before its expires_at; Huawei's gateway says so its own way."""

    async def test_huawei_flavoured_401(self, make_mock_cloud: Make, mock_client: Connect) -> None:
        clock = FakeClock()
        faults = Faults(token_ttl=10.0, flavour="huawei")
        mock = await faulty(make_mock_cloud, faults, clock=clock)
        client = await mock_client(mock, ALPHA)
        assert (await client.get("/servers")).status == 200
        clock.advance(10.0)
        answer = await client.get("/servers")
        assert answer.status == 401
        assert answer.json["error_code"] == "APIGW.0301"
        assert "token expires" in answer.json["error_msg"]
        assert mock.requests[-1].fault == "token_ttl"


class TestErrorFlavour:
    """Huawei-flavoured service errors."""

    async def test_huawei_404_and_500(self, make_mock_cloud: Make, mock_client: Connect) -> None:
        faults = Faults(flavour="huawei", server_error=Trigger(servers={"s-1": 1}))
        mock = await faulty(make_mock_cloud, faults)
        client = await mock_client(mock, ALPHA)
        missing = await client.get("/servers/nope")
        assert missing.status == 404
        assert set(missing.json["error"]) == {"code", "message"}
        failed = await client.action("s-1")
        assert failed.status == 500
        assert failed.json["error"]["code"].startswith("BMS.")


async def test_reset_replays_fault_decisions(make_mock_cloud: Make, mock_client: Connect) -> None:
    mock = await faulty(make_mock_cloud, Faults(server_error=Trigger(rate=0.5)))
    client = await mock_client(mock, ALPHA)

    async def run() -> list[int]:
        return [(await client.action(f"s-{i}")).status for i in range(10)]

    first = await run()
    mock.reset()
    assert await run() == first
