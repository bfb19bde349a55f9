"""Unit tests of the mock cloud's fault decisions, configuration and error bodies."""

from __future__ import annotations

import email.utils
import itertools
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bulkstop.mockcloud import FakeClock, Faults, MockConfig, Trigger, bodies, cli
from bulkstop.mockcloud.faults import Injector, TokenBucket, throttled


class TestTokenBucket:
    """Burst first, then the rate; the wait is exact."""

    def test_burst_then_rate(self) -> None:
        bucket = TokenBucket(rate=10.0, burst=3, now=0.0)
        assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
        assert bucket.take(0.0) == pytest.approx(0.1)
        assert bucket.take(0.05) == pytest.approx(0.05)
        assert bucket.take(0.1) == 0.0
        assert bucket.take(0.1) > 0.0

    def test_refill_is_capped_at_burst(self) -> None:
        bucket = TokenBucket(rate=100.0, burst=2, now=0.0)
        granted = [bucket.take(60.0) == 0.0 for _ in range(3)]
        assert granted == [True, True, False]

    def test_a_hammering_client_gets_burst_plus_refill(self) -> None:
        bucket = TokenBucket(rate=5.0, burst=5, now=0.0)
        granted = [i for i in range(1000) if bucket.take(i / 1000) == 0.0]
        # The burst at once, then one every 0.2 s: 9 in the first second.
        assert granted[:5] == [0, 1, 2, 3, 4]
        assert [b - a for a, b in itertools.pairwise(granted[5:])] == pytest.approx(
            [200, 200, 200], abs=2
        )
        assert len(granted) == 9


class TestInjector:
    """Draws are fixed by (seed, fault, key, attempt); named servers fire first."""

    def make(self, seed: int = 1, **faults: Any) -> Injector:
        return Injector(seed=seed, default=Faults(**faults), overrides={}, clock=FakeClock())

    def test_draws_are_reproducible_and_seeded(self) -> None:
        one, two, other = self.make(), self.make(), self.make(seed=2)
        keys = [("reset", f"s{i}/os-stop", 1) for i in range(50)]
        assert [one.draw(*k) for k in keys] == [two.draw(*k) for k in keys]
        assert [one.draw(*k) for k in keys] != [other.draw(*k) for k in keys]
        assert all(0.0 <= one.draw(*k) < 1.0 for k in keys)

    def test_rate_is_honoured(self) -> None:
        injector = self.make()
        trigger = Trigger(rate=0.25)
        fired = sum(injector.fires("html", trigger, f"k{i}", 1, None) for i in range(4000))
        assert fired / 4000 == pytest.approx(0.25, abs=0.03)

    def test_named_server_fires_for_its_first_k_actions(self) -> None:
        injector = self.make()
        trigger = Trigger(servers={"s1": 2})
        fired = [injector.fires("e", trigger, "s1/os-stop", n, "s1") for n in (1, 2, 3)]
        assert fired == [True, True, False]
        assert not injector.fires("e", trigger, "s2/os-stop", 1, "s2")
        # Named servers concern actions only: a GET (no target) does not fire.
        assert not injector.fires("e", trigger, "s1/get", 1, None)

    def test_attempts_count_per_key_and_reset(self) -> None:
        injector = self.make()
        assert [injector.attempt("a"), injector.attempt("a"), injector.attempt("b")] == [1, 2, 1]
        injector.reset()
        assert injector.attempt("a") == 1

    def test_latency_with_jitter_is_bounded(self) -> None:
        injector = self.make()
        faults = Faults(latency=0.02, jitter=0.01)
        delays = [injector.latency(faults, f"k{i}", 1) for i in range(200)]
        assert all(0.02 <= d < 0.03 for d in delays)
        assert len(set(delays)) > 100

    def test_per_project_faults(self) -> None:
        special = Faults(rate_limit=1.0)
        injector = Injector(seed=0, default=Faults(), overrides={"p1": special}, clock=FakeClock())
        assert injector.faults("p1") is special
        assert injector.faults("p2") == Faults()
        assert injector.faults(None) == Faults()
        assert injector.throttle("p2", injector.faults("p2"), 0.0) == 0.0

    def test_throttle_per_project_bucket(self) -> None:
        injector = self.make(rate_limit=2.0)
        faults = injector.faults("p")
        assert [injector.throttle("p", faults, 0.0) for _ in range(3)] == [0.0, 0.0, 0.5]
        assert injector.throttle("q", faults, 0.0) == 0.0  # another project, another bucket


class TestThrottledAnswers:
    """429 / 413 / APIG.0308 bodies, with Retry-After in the chosen form."""

    def test_nova_429(self) -> None:
        answer = throttled(Faults(rate_limit=5, throttle="429"), 0.2, "req-1")
        assert answer.status == 429
        assert answer.headers == {"Retry-After": "1"}
        assert answer.body == {
            "overLimit": {
                "code": 429,
                "message": "This request was rate-limited.",
                "retryAfter": "1",
            }
        }

    def test_legacy_413(self) -> None:
        answer = throttled(Faults(rate_limit=5, throttle="413"), 2.5, "req-1")
        assert answer.status == 413
        assert answer.headers["Retry-After"] == "3"
        assert answer.body["overLimit"]["retryAfter"] == "3"
        assert answer.body["overLimit"]["code"] == 413

    def test_huawei_gateway(self) -> None:
        answer = throttled(Faults(rate_limit=20, throttle="apig", retry_after="none"), 1, "r-9")
        assert answer.status == 429
        assert answer.headers == {}
        assert answer.body == {
            "error_code": "APIG.0308",
            "error_msg": "The throttling threshold has been reached: policy user over "
            "ratelimit,limit:20,time:1 second",
            "request_id": "r-9",
        }

    def test_http_date(self) -> None:
        answer = throttled(Faults(rate_limit=1, retry_after="date"), 1.5, "r")
        when = email.utils.parsedate_to_datetime(answer.headers["Retry-After"])
        assert when.tzinfo is not None


class TestBodies:
    """Error bodies of each flavour."""

    def test_nova_fault_names(self) -> None:
        assert bodies.nova(404, "x") == {"itemNotFound": {"code": 404, "message": "x"}}
        assert list(bodies.nova(502, "x")) == ["computeFault"]
        assert list(bodies.nova(503, "x")) == ["serviceUnavailable"]

    def test_huawei_codes(self) -> None:
        assert bodies.compute_error("huawei", 400, "m") == {
            "error": {"code": "BMS.0001", "message": "m"}
        }
        assert bodies.compute_error("huawei", 409, "m", huawei_code="BMS.0039")["error"][
            "code"
        ] == ("BMS.0039")

    def test_unauthorized_flavours(self) -> None:
        assert bodies.unauthorized("nova", "why", "r") == {
            "error": {
                "code": 401,
                "title": "Unauthorized",
                "message": "The request you have made requires authentication.",
            }
        }
        huawei = bodies.unauthorized("huawei", "token expires", "r")
        assert huawei["error_code"] == "APIGW.0301"
        assert huawei["error_msg"].endswith("token expires")

    def test_html_page(self) -> None:
        page = bodies.html_page(502)
        assert "<title>502 Bad Gateway</title>" in page


class TestConfig:
    """Validation and the JSON form of Faults."""

    def test_from_dict(self) -> None:
        faults = Faults.from_dict(
            {
                "rate_limit": 5,
                "reset": 0.1,
                "server_error": {"servers": {"s1": 2}},
                "race": {"servers": ["s2"]},
                "flavour": "huawei",
            }
        )
        assert faults.rate_limit == 5
        assert faults.reset == Trigger(rate=0.1)
        assert faults.server_error == Trigger(servers={"s1": 2})
        assert faults.race == Trigger(servers={"s2": 1})
        assert faults.armed

    @pytest.mark.parametrize(
        "document",
        [{"nope": 1}, {"reset": 2.0}, {"throttle": "418"}, {"rate_limit": 0}, {"reset": "x"}],
    )
    def test_from_dict_rejects(self, document: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            Faults.from_dict(document)

    def test_default_faults_are_disarmed(self) -> None:
        assert not Faults().armed
        assert Faults(token_ttl=5).armed
        assert Faults(race=Trigger(rate=0.1)).armed

    def test_config_validation(self) -> None:
        with pytest.raises(ValueError):
            MockConfig(projects=0)
        with pytest.raises(ValueError):
            MockConfig(max_limit=0)


class TestCommandLine:
    """``bulkstop mock-cloud`` options become a MockConfig (the server itself is not run)."""

    def run(
        self, monkeypatch: pytest.MonkeyPatch, *args: str
    ) -> tuple[int, MockConfig | None, str]:
        seen: list[MockConfig] = []

        def fake_run(config: MockConfig) -> int:
            seen.append(config)
            return 0

        monkeypatch.setattr(cli, "run_standalone", fake_run)
        result = CliRunner().invoke(cli.mock_cloud, list(args))
        return result.exit_code, seen[0] if seen else None, result.output

    def test_defaults(self, monkeypatch: pytest.MonkeyPatch) -> None:
        code, config, _ = self.run(monkeypatch)
        assert code == 0
        assert config is not None
        assert (config.host, config.port, config.servers, config.huawei) == (
            "127.0.0.1",
            0,
            100,
            False,
        )
        assert not config.faults.armed

    def test_fault_options(self, monkeypatch: pytest.MonkeyPatch) -> None:
        code, config, output = self.run(
            monkeypatch,
            *("--servers", "50", "--projects", "3", "--seed", "9", "--huawei"),
            *("--rate-limit", "20", "--throttle", "apig", "--retry-after", "date"),
            *("--error-rate", "0.1", "--fail-first", "abc:2", "--fail-first", "def"),
            *("--reset-rate", "0.01", "--html-rate", "0.02", "--slow-rate", "0.03"),
            *("--race-rate", "0.04", "--token-ttl", "30", "--latency", "0.02", "--jitter", "0.01"),
        )
        assert code == 0, output
        assert config is not None
        faults = config.faults
        assert (config.servers, config.projects, config.seed, config.huawei) == (50, 3, 9, True)
        assert (faults.rate_limit, faults.throttle, faults.retry_after) == (20, "apig", "date")
        assert faults.server_error == Trigger(rate=0.1, servers={"abc": 2, "def": 1})
        assert (faults.reset.rate, faults.html.rate, faults.slow.rate, faults.race.rate) == (
            0.01,
            0.02,
            0.03,
            0.04,
        )
        assert (faults.token_ttl, faults.latency, faults.jitter) == (30, 0.02, 0.01)
        assert faults.flavour == "huawei"  # implied by --huawei

    def test_faults_file(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        path = tmp_path / "faults.json"
        path.write_text(
            '{"default": {"latency": 0.01}, "projects": {"project-1": {"rate_limit": 3}}}'
        )
        code, config, output = self.run(monkeypatch, "--faults-file", str(path))
        assert code == 0, output
        assert config is not None
        assert config.faults == Faults(latency=0.01)
        assert config.project_faults == {"project-1": Faults(rate_limit=3)}

    def test_faults_file_default_excludes_fault_options(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        path = tmp_path / "faults.json"
        path.write_text('{"default": {"latency": 0.01}}')
        code, config, output = self.run(monkeypatch, "--faults-file", str(path), "--latency", "1")
        assert code == 2
        assert config is None
        assert "--latency" in output

    @pytest.mark.parametrize(
        "args",
        [("--fail-first", "abc:0"), ("--error-rate", "1.5"), ("--throttle", "418")],
    )
    def test_bad_options_are_usage_errors(
        self, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
    ) -> None:
        code, config, _ = self.run(monkeypatch, *args)
        assert code == 2
        assert config is None


def test_retry_after_is_at_least_one_second() -> None:
    for wait in (0.001, 0.5, 1.0):
        answer = throttled(Faults(rate_limit=100), wait, "r")
        assert answer.headers["Retry-After"] == str(max(1, math.ceil(wait)))
