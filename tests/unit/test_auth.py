"""Token caching and renewal, scope selection, and the keystoneauth error boundary.

Keystone itself is replaced by a blocking fake (it runs in a worker thread, as keystoneauth
does); the real keystoneauth path against the mock cloud is in the integration tests.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import anyio
import pytest
from keystoneauth1 import exceptions as ks_exc

from bulkstop.cloud.auth import (
    RENEW_BEFORE_EXPIRY,
    AuthSettings,
    Keystone,
    KeystoneTokens,
    ProjectAccess,
    _translate,
    authenticate_scope,
    projects_in_scope,
)
from bulkstop.errors import (
    AuthError,
    CloudAccessError,
    ConfigError,
    EndpointError,
    UsageError,
)

# openstacksdk 4.x warns about InfluxDB on every CloudRegion it builds (a PendingDeprecationWarning,
# which pyproject's DeprecationWarning filters do not cover).

SECRET = "s3cr3t-do-not-print"
ISSUED = 1_700_000_000.0


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeKeystone:
    """A blocking authenticate(): counts calls, can fail, can hold callers at a gate."""

    def __init__(self, lifetime: float = 3600.0) -> None:
        self.lifetime = lifetime
        self.calls: list[str | None] = []
        self.failure: Exception | None = None
        self.entered = threading.Event()
        self.gate: threading.Event | None = None
        #: What ``failure`` becomes after it was raised once (a refusal stays, a crash passes).
        self.sticky_failure: Exception | None = None
        self.own_project = "own"

    def __call__(self, project_id: str | None) -> ProjectAccess:
        self.calls.append(project_id)
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(timeout=10)
        if self.failure is not None:
            failure, self.failure = self.failure, self.sticky_failure
            raise failure
        scoped = project_id or self.own_project
        return ProjectAccess(
            project_id=scoped,
            token=f"token-{scoped}-{len(self.calls)}",
            compute_url=f"http://nova.test/v2.1/{scoped}",
            issued_at=ISSUED,
            expires_at=ISSUED + self.lifetime,
        )

    async def wait_entered(self) -> None:
        """Until a worker thread is inside authenticate()."""
        await anyio.to_thread.run_sync(self.entered.wait)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def keystone() -> FakeKeystone:
    return FakeKeystone()


@pytest.fixture
def tokens(keystone: FakeKeystone, clock: FakeClock) -> KeystoneTokens:
    return KeystoneTokens(keystone, clock=clock)


class TestCurrent:
    """The hot path: cached tokens, renewal ahead of expiry, single flight."""

    async def test_cached_after_first_call(
        self, tokens: KeystoneTokens, keystone: FakeKeystone
    ) -> None:
        first = await tokens.current("p1")
        assert await tokens.current("p1") is first
        assert keystone.calls == ["p1"]

    async def test_one_token_per_project(
        self, tokens: KeystoneTokens, keystone: FakeKeystone
    ) -> None:
        one, two = await tokens.current("p1"), await tokens.current("p2")
        assert (one.project_id, two.project_id) == ("p1", "p2")
        assert keystone.calls == ["p1", "p2"]

    async def test_renewed_when_ten_percent_of_an_hour_remains(
        self, tokens: KeystoneTokens, keystone: FakeKeystone, clock: FakeClock
    ) -> None:
        first = await tokens.current("p1")
        clock.now = 3600 - 360 - 1  # 10% of 3600 s is more than RENEW_BEFORE_EXPIRY
        assert await tokens.current("p1") is first
        clock.now = 3600 - 360 + 1
        assert (await tokens.current("p1")).token != first.token
        assert len(keystone.calls) == 2

    async def test_renewed_when_five_minutes_remain(self, clock: FakeClock) -> None:
        keystone = FakeKeystone(lifetime=1200.0)
        tokens = KeystoneTokens(keystone, clock=clock)
        await tokens.current("p1")
        clock.now = 1200 - RENEW_BEFORE_EXPIRY - 1
        await tokens.current("p1")
        assert len(keystone.calls) == 1
        clock.now = 1200 - RENEW_BEFORE_EXPIRY + 1
        await tokens.current("p1")
        assert len(keystone.calls) == 2

    async def test_short_lived_token_is_kept_half_its_life(self, clock: FakeClock) -> None:
        keystone = FakeKeystone(lifetime=60.0)
        tokens = KeystoneTokens(keystone, clock=clock)
        await tokens.current("p1")
        clock.now = 29.0
        await tokens.current("p1")
        assert len(keystone.calls) == 1
        clock.now = 31.0
        await tokens.current("p1")
        assert len(keystone.calls) == 2

    async def test_concurrent_callers_share_one_authentication(
        self, tokens: KeystoneTokens, keystone: FakeKeystone
    ) -> None:
        keystone.gate = threading.Event()
        seen: list[ProjectAccess] = []

        async def call() -> None:
            seen.append(await tokens.current("p1"))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(call)
            await keystone.wait_entered()
            await anyio.wait_all_tasks_blocked()
            keystone.gate.set()
        assert keystone.calls == ["p1"]
        assert len({access.token for access in seen}) == 1
        assert len(seen) == 20

    async def test_failure_is_shared_by_the_waiters_then_retried(
        self, tokens: KeystoneTokens, keystone: FakeKeystone
    ) -> None:
        keystone.gate = threading.Event()
        keystone.failure = keystone.sticky_failure = AuthError("refused for project p1")
        errors: list[BaseException] = []

        async def call() -> None:
            try:
                await tokens.current("p1")
            except AuthError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(call)
            await keystone.wait_entered()
            await anyio.wait_all_tasks_blocked()
            keystone.gate.set()
        assert len(errors) == 10
        assert keystone.calls == ["p1"]  # bad credentials are tried once, not ten times
        keystone.failure = keystone.sticky_failure = None
        assert (await tokens.current("p1")).project_id == "p1"
        assert keystone.calls == ["p1", "p1"]

    async def test_crashed_attempt_is_not_shared(
        self, tokens: KeystoneTokens, keystone: FakeKeystone
    ) -> None:
        keystone.gate = threading.Event()
        keystone.failure = RuntimeError("keystoneauth raised something unexpected")
        outcomes: list[object] = []

        async def call() -> None:
            try:
                outcomes.append(await tokens.current("p1"))
            except RuntimeError as exc:
                outcomes.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await keystone.wait_entered()
            tg.start_soon(call)
            await anyio.wait_all_tasks_blocked()
            keystone.gate.set()
        crashed, served = outcomes
        assert isinstance(crashed, RuntimeError)
        assert isinstance(served, ProjectAccess)  # the waiter tried again by itself
        assert keystone.calls == ["p1", "p1"]

    async def test_old_token_served_while_one_caller_renews(
        self, tokens: KeystoneTokens, keystone: FakeKeystone, clock: FakeClock
    ) -> None:
        old = await tokens.current("p1")
        clock.now = 3300.0  # past the renewal point, well before expiry
        keystone.entered.clear()
        keystone.gate = threading.Event()
        renewed: list[ProjectAccess] = []

        async def renewer() -> None:
            renewed.append(await tokens.current("p1"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(renewer)
            await keystone.wait_entered()
            assert await tokens.current("p1") is old  # no waiting on the renewal
            keystone.gate.set()
        assert renewed[0].token != old.token
        assert await tokens.current("p1") is renewed[0]

    async def test_callers_wait_when_the_old_token_is_nearly_expired(
        self, tokens: KeystoneTokens, keystone: FakeKeystone, clock: FakeClock
    ) -> None:
        await tokens.current("p1")
        clock.now = 3500.0  # within the last half of the renewal margin
        keystone.entered.clear()
        keystone.gate = threading.Event()
        seen: list[ProjectAccess] = []

        async def call() -> None:
            seen.append(await tokens.current("p1"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await keystone.wait_entered()
            tg.start_soon(call)
            await anyio.wait_all_tasks_blocked()
            assert seen == []
            keystone.gate.set()
        assert len(keystone.calls) == 2
        assert seen[0] is seen[1]


class TestRenew:
    """Renewal after a 401: once per rejected token."""

    async def test_renew_replaces_the_rejected_token(
        self, tokens: KeystoneTokens, keystone: FakeKeystone
    ) -> None:
        old = await tokens.current("p1")
        new = await tokens.renew("p1", rejected_token=old.token)
        assert new.token != old.token
        assert await tokens.current("p1") is new

    async def test_second_renew_for_the_same_rejection_is_free(
        self, tokens: KeystoneTokens, keystone: FakeKeystone
    ) -> None:
        old = await tokens.current("p1")
        first = await tokens.renew("p1", rejected_token=old.token)
        second = await tokens.renew("p1", rejected_token=old.token)
        assert second is first
        assert len(keystone.calls) == 2

    async def test_renew_without_a_token_always_authenticates(
        self, tokens: KeystoneTokens, keystone: FakeKeystone
    ) -> None:
        await tokens.current("p1")
        await tokens.renew("p1")
        await tokens.renew("p1")
        assert len(keystone.calls) == 3

    async def test_burst_of_renewals_costs_one_authentication(
        self, tokens: KeystoneTokens, keystone: FakeKeystone
    ) -> None:
        old = await tokens.current("p1")
        keystone.entered.clear()
        keystone.gate = threading.Event()
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(lambda: tokens.renew("p1", rejected_token=old.token))
            await keystone.wait_entered()
            await anyio.wait_all_tasks_blocked()
            keystone.gate.set()
        assert len(keystone.calls) == 2

    async def test_refusal_propagates(self, tokens: KeystoneTokens, keystone: FakeKeystone) -> None:
        await tokens.current("p1")
        keystone.failure = AuthError("refused")
        with pytest.raises(AuthError):
            await tokens.renew("p1")


class TestScope:
    """Which projects a run acts in."""

    def test_explicit_projects_in_order_without_repeats(self) -> None:
        settings = AuthSettings(projects=("b", "a", "b"))
        assert projects_in_scope(settings, "own") == ["b", "a"]

    def test_default_is_the_credentials_project(self) -> None:
        assert projects_in_scope(AuthSettings(), "own") == ["own"]

    def test_unscoped_credentials_without_projects(self) -> None:
        with pytest.raises(ConfigError, match="OS_PROJECT_ID"):
            projects_in_scope(AuthSettings(), None)

    def test_all_projects_excludes_explicit_projects(self) -> None:
        with pytest.raises(UsageError):
            AuthSettings(projects=("a",), all_projects=True)

    async def test_authenticate_scope_with_projects_skips_own_scope(
        self, tokens: KeystoneTokens, keystone: FakeKeystone
    ) -> None:
        scope = await authenticate_scope(AuthSettings(projects=("a", "b")), tokens)
        assert scope == ["a", "b"]
        assert keystone.calls == ["a", "b"]

    async def test_authenticate_scope_uses_and_caches_own_project(
        self, tokens: KeystoneTokens, keystone: FakeKeystone
    ) -> None:
        assert await authenticate_scope(AuthSettings(), tokens) == ["own"]
        await tokens.current("own")
        assert keystone.calls == [None]


def test_project_access_repr_hides_the_token() -> None:
    access = FakeKeystone()("p1")
    assert access.token not in repr(access)


@pytest.mark.usefixtures("isolated_openstack_env")
class TestLoad:
    """Configuration problems are ConfigError with a hint, found before any network call."""

    def test_nothing_configured(self) -> None:
        with pytest.raises(ConfigError, match="OS_CLOUD") as caught:
            Keystone.load(AuthSettings())
        assert "OS_AUTH_URL" in str(caught.value)
        assert "auth_url" in str(caught.value)

    def test_unknown_cloud(self) -> None:
        with pytest.raises(ConfigError, match="nope"):
            Keystone.load(AuthSettings(os_cloud="nope"))

    def test_unknown_auth_type(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OS_AUTH_TYPE", "no-such-plugin")
        monkeypatch.setenv("OS_AUTH_URL", "http://127.0.0.1:9/v3")
        with pytest.raises(ConfigError, match="no-such-plugin"):
            Keystone.load(AuthSettings())

    def test_missing_password(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OS_AUTH_URL", "http://127.0.0.1:9/v3")
        monkeypatch.setenv("OS_USERNAME", "alice")
        with pytest.raises(ConfigError, match="password"):
            Keystone.load(AuthSettings())

    def test_tls_settings_follow_os_cacert(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OS_AUTH_URL", "https://127.0.0.1:9/v3")
        monkeypatch.setenv("OS_USERNAME", "alice")
        monkeypatch.setenv("OS_PASSWORD", SECRET)
        monkeypatch.setenv("OS_CACERT", "/etc/ssl/ca.pem")
        keystone = Keystone.load(AuthSettings())
        try:
            assert keystone.tls.verify == "/etc/ssl/ca.pem"
            assert keystone.auth_url == "https://127.0.0.1:9/v3"
        finally:
            keystone.close()


class TestTranslate:
    """keystoneauth exceptions become the bulkstop tree; no secret leaks into a message."""

    URL = "https://keystone.test/v3"

    @pytest.mark.parametrize(
        ("exc", "kind", "fragment"),
        [
            (ks_exc.Unauthorized(message="bad password"), AuthError, "refused the credentials"),
            (ks_exc.Forbidden(message="no role"), AuthError, "project p1"),
            (ks_exc.InternalServerError(message="boom"), EndpointError, "HTTP 500"),
            (ks_exc.ConnectFailure("refused"), EndpointError, URL),
            (ks_exc.ConnectTimeout("slow"), EndpointError, "cannot reach Keystone"),
            (ks_exc.DiscoveryFailure("no versions"), EndpointError, URL),
            (ks_exc.NoMatchingPlugin("x"), ConfigError, "OS_CLOUD"),
            (ks_exc.AuthorizationFailure("odd"), AuthError, "AuthorizationFailure"),
        ],
    )
    def test_mapping(
        self, exc: ks_exc.ClientException, kind: type[CloudAccessError], fragment: str
    ) -> None:
        error = _translate(exc, auth_url=self.URL, where="project p1")
        assert type(error) is kind
        assert fragment in str(error)
        assert SECRET not in str(error)

    def test_connection_failure_names_the_root_cause(self) -> None:
        try:
            try:
                raise ConnectionRefusedError(111, "Connection refused")
            except OSError as inner:
                raise ks_exc.ConnectFailure("Unable to establish connection") from inner
        except ks_exc.ConnectFailure as exc:
            error = _translate(exc, auth_url=self.URL, where="project p1")
        assert str(error) == f"cannot reach Keystone at {self.URL}: Connection refused"


#: Run in a fresh interpreter: which openstack modules a configuration load leaves behind.
_LOADER_PROBE = """
import os, sys
os.environ.update(OS_AUTH_URL="http://127.0.0.1:9/v3", OS_USERNAME="u", OS_PASSWORD="p",
                  OS_PROJECT_ID="p1", OS_USER_DOMAIN_NAME="Default")
os.environ["OS_CLIENT_CONFIG_FILE"] = os.devnull
from bulkstop.cloud.auth import AuthSettings, Keystone
keystone = Keystone.load(AuthSettings())
print(keystone.auth_url, sorted(m for m in sys.modules if m.split(".")[0] == "openstack"))
print("prometheus_client" in sys.modules)
import openstack, prometheus_client
print(callable(getattr(openstack, "connect", None)), callable(prometheus_client.Gauge))
"""


def test_config_loader_leaves_the_sdk_unimported_and_whole() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _LOADER_PROBE], capture_output=True, text=True, check=True
    )
    loaded, metrics_loaded, real_packages = done.stdout.splitlines()
    # The configuration was read, and nothing of openstack stays in sys.modules...
    assert loaded == "http://127.0.0.1:9/v3 []"
    # ...nor prometheus_client, which the loader would import for nothing...
    assert metrics_loaded == "False"
    # ...so a later import gets the real SDK, not the package bulkstop set up, and the real
    # prometheus_client (for --metrics-file), not the hidden one.
    assert real_packages == "True True"
