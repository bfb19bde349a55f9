"""Keystone tokens and compute endpoints, configured the way every OpenStack tool is configured.

Settings come from openstacksdk's config loader (``clouds.yaml`` and ``secure.yaml`` on the usual
search path, ``OS_*`` variables, ``OS_CACERT``/``OS_INSECURE``, password and application
credentials); tokens come from keystoneauth1. Both are synchronous, so every call into them runs
in a worker thread, never on the event loop. This module is the one place where their exceptions
become bulkstop's :class:`~bulkstop.errors.CloudAccessError` tree, and no message it writes
carries a password, a secret or a token.

Three layers:

* :class:`AuthSettings`: what the user asked for (which cloud, which projects, which endpoint).
* :class:`Keystone`: the synchronous boundary. It loads the configuration once and authenticates
  for one project at a time, returning a :class:`ProjectAccess` (token, compute URL, expiry).
* :class:`KeystoneTokens`: the asynchronous per-project token cache the compute client reads on
  every request. A valid cached token costs a dict lookup and a float compare; renewals (ahead of
  expiry, or on demand after a 401) are single-flight per project.

Why one module of ~600 lines: it is the one boundary where keystoneauth1's and openstacksdk's
exceptions are translated (errors.py promises exactly one); splitting the settings, the
synchronous Keystone calls and the token cache apart would spread that boundary over three files.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import loading as ks_loading
from keystoneauth1 import session as ks_session
from keystoneauth1.access import AccessInfo
from keystoneauth1.identity.base import BaseIdentityPlugin
from keystoneauth1.identity.v3 import ApplicationCredential

from bulkstop._version import __version__
from bulkstop.errors import AuthError, CloudAccessError, ConfigError, EndpointError, UsageError
from bulkstop.limits import DEFAULT_AUTH_TIMEOUT
from bulkstop.redaction import redact

# keystoneauth logs a warning on every discovery fallback and failure; bulkstop reports the
# failure itself, in one line, so its log is kept quiet unless Python logging is configured.
logging.getLogger("keystoneauth").setLevel(logging.ERROR)

#: How bulkstop introduces itself to Keystone and to the compute API.
USER_AGENT: Final = f"bulkstop/{__version__}"
#: A token is renewed once less than this many seconds of its lifetime remain...
RENEW_BEFORE_EXPIRY: Final = 300.0
#: ...or less than this fraction of its lifetime, whichever comes first...
RENEW_FRACTION: Final = 0.1
#: ...but it is used for at least this fraction of its lifetime, so that short-lived tokens
#: are not renewed on every request.
MIN_USE_FRACTION: Final = 0.5

#: Scope options dropped when password-style credentials are re-scoped to another project id.
_SCOPE_OPTIONS: Final = frozenset(
    {
        "project_id",
        "project_name",
        "tenant_id",
        "tenant_name",
        "domain_id",
        "domain_name",
        "system_scope",
        "trust_id",
    }
)
#: A catalog compute URL of the v2 API (``/v2`` or ``/v2/{project_id}``, Huawei's IAM).
_COMPUTE_V2: Final = re.compile(r"/v2(/[^/]+)?/?$")
_HOW_TO_CONFIGURE: Final = (
    "set OS_CLOUD (or pass `os_cloud`) to name a clouds.yaml entry, or set OS_AUTH_URL, "
    "OS_USERNAME, OS_PASSWORD, OS_USER_DOMAIN_NAME and OS_PROJECT_ID (or "
    "OS_APPLICATION_CREDENTIAL_ID and OS_APPLICATION_CREDENTIAL_SECRET with "
    "OS_AUTH_TYPE=v3applicationcredential)"
)
_NOT_SCOPED: Final = (
    "the credentials are not scoped to a project: set OS_PROJECT_ID (or OS_PROJECT_NAME with "
    "OS_PROJECT_DOMAIN_NAME), add a project to the clouds.yaml entry, or pass `projects`"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSettings:
    """Which cloud and projects to act in.

    ``os_cloud`` names a clouds.yaml entry; ``None`` means ``$OS_CLOUD`` or, without it, the
    ``OS_*`` environment. ``projects`` are project ids to act in, each with its own token; empty
    means the credentials' own project. ``endpoint`` replaces the catalog's compute URL; a
    ``{project_id}`` in it is replaced by each project's id. ``all_projects`` lists every
    tenant's servers through the credentials' own project (admin only), so it excludes
    ``projects``. ``region_name`` and ``interface`` override the configuration's.
    """

    os_cloud: str | None = None
    projects: tuple[str, ...] = ()
    endpoint: str | None = None
    all_projects: bool = False
    region_name: str | None = None
    interface: str | None = None

    def __post_init__(self) -> None:
        if self.all_projects and self.projects:
            raise UsageError("`all_projects` and `projects` exclude each other")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectAccess:
    """A token scoped to one project, and where that project's compute API is."""

    project_id: str
    token: str
    #: Compute endpoint without a trailing slash, e.g. ``https://ecs.example/v2.1/<project>``.
    compute_url: str
    #: Unix times, as Keystone wrote them (so their difference is free of local clock skew).
    issued_at: float
    expires_at: float

    def __repr__(self) -> str:
        # Keep the token out of logs and tracebacks.
        return f"ProjectAccess(project_id={self.project_id!r}, compute_url={self.compute_url!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSettings:
    """Certificate checks as configured (``OS_CACERT``, ``OS_INSECURE``, ``OS_CERT``/``OS_KEY``).

    ``verify`` is ``True`` (system CAs), ``False`` (no check) or a CA bundle path; ``cert`` is a
    client certificate path, or a (certificate, key) pair.
    """

    verify: bool | str = True
    cert: str | tuple[str, str] | None = None


@functools.cache
def config_loader() -> tuple[ModuleType, ModuleType]:
    """openstacksdk's ``openstack.config`` and ``openstack.exceptions``, without the rest of it.

    ``import openstack.config`` first runs ``openstack/__init__.py``, which imports the whole
    SDK (``openstack.connection`` and every service proxy: ~460 modules, the largest single part
    of a run's start-up, benchmarks/README.md); the loader needs ~17 of them. Unless the SDK is
    loaded already, the package is put in place for this import without running its
    ``__init__``, and taken out of ``sys.modules`` again with everything imported under it: a
    later ``import openstack`` (the SDK used beside bulkstop) gets the whole, real package.
    Called on first use (not at import: ``--help`` need not pay even this).
    """
    names = ("openstack.config", "openstack.exceptions")
    spec = importlib.util.find_spec("openstack")
    if "openstack" in sys.modules or spec is None or spec.submodule_search_locations is None:
        config, exceptions = (importlib.import_module(name) for name in names)
        return config, exceptions
    sys.modules["openstack"] = importlib.util.module_from_spec(spec)
    # The loader imports prometheus_client, if installed, for API-call metrics bulkstop never
    # asks for (~30 ms): it is hidden for this import, and left to load when metrics are wanted.
    hidden = [] if "prometheus_client" in sys.modules else ["prometheus_client"]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # "import" raises ImportError
    try:
        config, exceptions = (importlib.import_module(name) for name in names)
    finally:
        for name in [n for n in sys.modules if n == "openstack" or n.startswith("openstack.")]:
            del sys.modules[name]
        for name in hidden:
            del sys.modules[name]
    return config, exceptions


def projects_in_scope(settings: AuthSettings, own_project_id: str | None) -> list[str]:
    """The project ids to act in (the order of the listing and of the report).

    ``--project`` ids in order without repeats, else the credentials' own project; ConfigError
    when there is neither.
    """
    if settings.projects:
        return list(dict.fromkeys(settings.projects))
    if own_project_id is None:
        raise ConfigError(_NOT_SCOPED)
    return [own_project_id]


class Keystone:
    """The synchronous keystoneauth1 boundary: one loaded configuration, one HTTP session.

    Every method may block on the network or the disk: call them from a worker thread.
    """

    def __init__(
        self,
        *,
        auth_type: str,
        auth_options: dict[str, Any],
        own_plugin: BaseIdentityPlugin,
        session: ks_session.Session,
        endpoint: str | None,
        interface: str | list[str] | None,
        region_name: str | None,
        tls: TlsSettings,
    ) -> None:
        self._auth_type = auth_type
        self._auth_options = auth_options
        self._own_plugin = own_plugin
        self._session = session
        self._endpoint = endpoint
        self._interface = interface or "public"
        self._region_name = region_name or None
        self.tls = tls
        self.auth_url = str(auth_options.get("auth_url") or "")
        self._plugins: dict[str, BaseIdentityPlugin] = {}

    @property
    def region_name(self) -> str | None:
        """The configured region (it names Huawei's batch endpoints), or None."""
        return self._region_name

    @classmethod
    def load(cls, settings: AuthSettings, *, timeout: float = DEFAULT_AUTH_TIMEOUT) -> Keystone:
        """Read the configuration (clouds.yaml, secure.yaml, ``OS_*``); no network yet.

        Raises ConfigError when the configuration is missing, incomplete, malformed (``auth``
        given as a string, an unknown auth option, an invalid URL) or names an unknown cloud or
        auth type.
        """
        try:
            return cls._load(settings, timeout=timeout)
        except (ValueError, TypeError, AttributeError, LookupError) as exc:
            raise _malformed(exc) from exc

    @classmethod
    def _load(cls, settings: AuthSettings, *, timeout: float) -> Keystone:
        os_config, os_exc = config_loader()

        overrides: dict[str, Any] = {
            key: value
            for key, value in (
                ("region_name", settings.region_name),
                ("interface", settings.interface),
            )
            if value is not None
        }
        try:
            region = os_config.OpenStackConfig(app_name="bulkstop").get_one(
                cloud=settings.os_cloud, **overrides
            )
        except os_exc.ConfigException as exc:
            reason = str(exc).rstrip(".")
            raise ConfigError(f"cloud configuration: {reason}; {_HOW_TO_CONFIGURE}") from exc
        except ks_exc.ClientException as exc:
            raise _translate(exc, auth_url="", where="the configured credentials") from exc
        config = region.config
        auth_type = str(config.get("auth_type") or "password")
        auth_options = dict(config.get("auth") or {})
        if "password" in auth_type and not auth_options.get("password"):
            # keystoneauth would fail on the first request with a bare Exception.
            raise ConfigError(f"cloud configuration lacks password; {_HOW_TO_CONFIGURE}")
        own_plugin = region.get_auth()
        if not isinstance(own_plugin, BaseIdentityPlugin):
            raise ConfigError(f"auth type {auth_type!r} does not get tokens from Keystone")
        verify, cert = region.get_requests_verify_args()
        tls = TlsSettings(verify=True if verify is None else verify, cert=cert)
        session = ks_session.Session(
            verify=tls.verify, cert=tls.cert, timeout=timeout, user_agent=USER_AGENT
        )
        return cls(
            auth_type=auth_type,
            auth_options=auth_options,
            own_plugin=own_plugin,
            session=session,
            endpoint=settings.endpoint or region.get_endpoint("compute"),
            interface=region.get_interface("compute"),
            region_name=region.get_region_name("compute"),
            tls=tls,
        )

    def authenticate(self, project_id: str | None) -> ProjectAccess:
        """Get a new token scoped to ``project_id`` (``None``: the credentials' own scope).

        Raises AuthError (credentials refused, no compute endpoint), EndpointError (Keystone
        unreachable or broken) or ConfigError (credentials that cannot act in that project).
        """
        where = f"project {project_id}" if project_id else "the configured project"
        try:
            plugin = self._plugin_for(project_id)
            access = plugin.get_auth_ref(self._session)
            scoped = access.project_id
            if scoped is None:  # only possible for the credentials' own scope
                raise ConfigError(_NOT_SCOPED)
            if project_id is not None and scoped != project_id:
                raise ConfigError(
                    f"the credentials are bound to project {scoped} (application credentials "
                    f"carry their own scope) and cannot act in project {project_id}"
                )
            return ProjectAccess(
                project_id=scoped,
                token=str(access.auth_token),
                compute_url=self._compute_url(plugin, access, scoped),
                issued_at=access.issued.timestamp() if access.issued else time.time(),
                expires_at=access.expires.timestamp() if access.expires else time.time(),
            )
        except ks_exc.ClientException as exc:
            raise _translate(exc, auth_url=self.auth_url, where=where) from exc
        except (ValueError, TypeError) as exc:  # e.g. an auth_url that is not a URL
            raise _malformed(exc) from exc

    def close(self) -> None:
        """Drop the pooled connections to Keystone."""
        self._session.close()

    def _plugin_for(self, project_id: str | None) -> BaseIdentityPlugin:
        """The auth plugin for a scope: the configured one, or a copy re-scoped to the id."""
        if project_id is None or not self._can_rescope():
            return self._own_plugin
        plugin = self._plugins.get(project_id)
        if plugin is None:
            options = {k: v for k, v in self._auth_options.items() if k not in _SCOPE_OPTIONS}
            options["project_id"] = project_id
            loaded: object = ks_loading.get_plugin_loader(self._auth_type).load_from_options(
                **options
            )
            if not isinstance(loaded, BaseIdentityPlugin):  # same type as the own plugin
                raise TypeError(f"{self._auth_type} loaded {type(loaded).__name__}")
            plugin = self._plugins.setdefault(project_id, loaded)
        return plugin

    def _can_rescope(self) -> bool:
        """Application credentials carry their own scope; password-style credentials do not."""
        return not isinstance(self._own_plugin, ApplicationCredential)

    def _compute_url(self, plugin: BaseIdentityPlugin, access: AccessInfo, project_id: str) -> str:
        if self._endpoint is not None:
            url = self._endpoint.replace("{project_id}", project_id)
            url = url.replace("%(project_id)s", project_id)  # openstacksdk's template syntax
            return url.rstrip("/")
        try:
            found = access.service_catalog.url_for(
                service_type="compute", interface=self._interface, region_name=self._region_name
            )
        except ks_exc.EndpointNotFound:
            found = None
        if not found:
            region = f", region {self._region_name}" if self._region_name else ""
            raise AuthError(
                f"Keystone's catalog for project {project_id} has no compute endpoint "
                f"(interface {self._interface}{region}); pass `endpoint` to name it"
            )
        if _COMPUTE_V2.search(urlsplit(found).path):
            return self._upgraded(plugin, access, found)
        return found.rstrip("/")

    def _upgraded(self, plugin: BaseIdentityPlugin, access: AccessInfo, found: str) -> str:
        """The v2.1 URL of a catalog's v2 compute URL, by version discovery (as openstacksdk).

        The v2 API ignores microversions, so its tag filters would be ignored: never use it.
        """
        plugin.auth_ref = access  # discovery reuses this token instead of authenticating again
        data = self._session.get_endpoint_data(
            auth=plugin,
            service_type="compute",
            interface=self._interface,
            region_name=self._region_name,
            min_version=(2, 1),
            max_version=(2, "latest"),
        )
        url = data.url if data is not None else None
        if not url or _COMPUTE_V2.search(urlsplit(url).path):
            raise AuthError(
                f"the catalog's compute URL {found} is the v2 API, and version discovery found "
                "no v2.1 beside it; pass `endpoint` with the v2.1 URL"
            )
        return str(url).rstrip("/")


def _malformed(exc: Exception) -> ConfigError:
    """The error for a configuration that the loaders choke on (their own exception types)."""
    return ConfigError(
        f"cloud configuration cannot be used ({type(exc).__name__}: {redact(str(exc))}); "
        f"{_HOW_TO_CONFIGURE}"
    )


def _translate(exc: ks_exc.ClientException, *, auth_url: str, where: str) -> CloudAccessError:
    """The bulkstop error for a keystoneauth1 exception (messages never carry secrets)."""
    at = f" at {auth_url}" if auth_url else ""
    if isinstance(exc, ks_exc.MissingRequiredOptions):
        missing = ", ".join(sorted(opt.dest for opt in exc.options))
        return ConfigError(f"cloud configuration lacks {missing}; {_HOW_TO_CONFIGURE}")
    if isinstance(exc, ks_exc.AuthPluginException):  # NoMatchingPlugin, OptionError...
        return ConfigError(f"cloud configuration: {exc}; {_HOW_TO_CONFIGURE}")
    if isinstance(exc, ks_exc.Unauthorized | ks_exc.Forbidden):
        return AuthError(f"Keystone refused the credentials for {where}: {_message(exc)}")
    if isinstance(exc, ks_exc.HttpError):
        return EndpointError(
            f"Keystone{at} answered HTTP {exc.http_status} for {where}: {_message(exc)}"
        )
    if isinstance(exc, ks_exc.ConnectionError | ks_exc.DiscoveryFailure):
        return EndpointError(f"cannot reach Keystone{at}: {_root_cause(exc)}")
    return AuthError(f"authentication for {where} failed: {type(exc).__name__}: {_message(exc)}")


def _message(exc: ks_exc.ClientException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(message)


def _root_cause(exc: BaseException) -> str:
    """The most specific readable reason in an exception chain (e.g. "Connection refused")."""
    seen: set[int] = set()
    current: BaseException | None = exc
    reason = str(exc)
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            reason = current.strerror
        current = current.__cause__ or current.__context__
    return reason[:300]


@dataclass(slots=True)
class _Cached:
    """A token and the local monotonic times at which to renew it and to stop using it."""

    access: ProjectAccess
    renew_at: float
    usable_until: float


@dataclass(slots=True)
class _Slot:
    """Per-project state: the cached token and the lock that makes renewals single-flight."""

    lock: anyio.Lock = field(default_factory=anyio.Lock)
    cached: _Cached | None = None
    #: Completed authentications (successful or refused). A caller that waited for the lock
    #: and sees it changed shares that outcome instead of authenticating again.
    attempts: int = 0
    failure: CloudAccessError | None = None

    def succeeded(self, cached: _Cached) -> None:
        self.cached, self.failure = cached, None
        self.attempts += 1

    def failed(self, failure: CloudAccessError) -> None:
        self.failure = failure
        self.attempts += 1


T = TypeVar("T")

#: Set once a Keystone exchange was abandoned at its timeout: its worker thread may still be
#: blocked, and interpreter shutdown would wait for it (the CLI leaves at once instead).
ABANDONED: Final = threading.Event()


async def bounded(seconds: float, exchange: Callable[[Any], T], argument: Any) -> T:
    """Run a blocking Keystone exchange in a worker thread, bounded as a whole by ``seconds``.

    keystoneauth1's timeout is per socket read: a Keystone that drips one byte a second never
    trips it. Past ``seconds`` the thread is abandoned (it ends with its socket) and the run
    fails with EndpointError.
    """
    with anyio.move_on_after(seconds):
        return await anyio.to_thread.run_sync(exchange, argument, abandon_on_cancel=True)
    ABANDONED.set()
    raise EndpointError(f"Keystone did not complete an exchange within {seconds:g}s")


class KeystoneTokens:
    """Per-project tokens, renewed ahead of expiry and on demand; single-flight per project.

    ``authenticate`` is a blocking function (normally :meth:`Keystone.authenticate`) that runs
    in a worker thread; ``clock`` is a monotonic clock (injectable for tests); ``close`` is
    called by :meth:`aclose`. A token is renewed once less than
    ``max(RENEW_BEFORE_EXPIRY, RENEW_FRACTION * lifetime)`` remains, but not before
    ``MIN_USE_FRACTION`` of its lifetime has passed. While one caller renews it, the others keep
    using the old token while less than half of that margin has been used up; after that they
    wait for the renewal. Waiters share its outcome, including a refusal, so bad credentials
    are tried once, not once per waiting request. A cancelled or crashed attempt is not shared:
    the next caller tries again.
    """

    def __init__(
        self,
        authenticate: Callable[[str | None], ProjectAccess],
        *,
        clock: Callable[[], float] = time.monotonic,
        close: Callable[[], None] | None = None,
        timeout: float = DEFAULT_AUTH_TIMEOUT,
    ) -> None:
        self._authenticate = authenticate
        self._timeout = timeout
        self._clock = clock
        self._close = close
        self._slots: dict[str, _Slot] = {}

    async def current(self, project_id: str) -> ProjectAccess:
        """A valid token for the project, authenticating or renewing it first if needed."""
        slot = self._slots.get(project_id)
        if slot is not None and slot.cached is not None and self._clock() < slot.cached.renew_at:
            return slot.cached.access
        return await self._current_slow(project_id)

    async def renew(self, project_id: str, *, rejected_token: str | None = None) -> ProjectAccess:
        """A fresh token for the project, after the cloud answered 401.

        With ``rejected_token``, nothing is fetched if the cached token is already another one
        (a concurrent caller renewed it), so a burst of 401s costs one authentication.
        """
        slot = self._slot(project_id)
        seen = rejected_token
        if seen is None and slot.cached is not None:
            seen = slot.cached.access.token
        return await self._replace(project_id, slot, seen)

    async def own_project(self) -> str:
        """Authenticate with the credentials' own scope; return (and cache) its project id."""
        started = self._clock()
        access = await bounded(self._timeout, self._authenticate, None)
        slot = self._slot(access.project_id)
        async with slot.lock:
            slot.succeeded(self._deadlines(access, started))
        return access.project_id

    async def aclose(self) -> None:
        """Release the Keystone connections."""
        if self._close is not None:
            self._close()

    async def _current_slow(self, project_id: str) -> ProjectAccess:
        slot = self._slot(project_id)
        cached = slot.cached
        if cached is not None and slot.lock.locked() and self._clock() < cached.usable_until:
            return cached.access  # another caller is renewing; the old token still works
        try:
            return await self._replace(project_id, slot, cached.access.token if cached else None)
        except CloudAccessError:
            if cached is not None and self._clock() < cached.usable_until:
                return cached.access  # renewing ahead of expiry failed: retry on a later call
            raise

    async def _replace(self, project_id: str, slot: _Slot, seen: str | None) -> ProjectAccess:
        """Authenticate unless another caller replaced token ``seen`` (or failed) meanwhile."""
        attempts = slot.attempts
        async with slot.lock:
            if slot.attempts != attempts:  # one completed while we waited: share its outcome
                if slot.failure is not None:
                    raise slot.failure
                if slot.cached is not None:
                    return slot.cached.access
            cached = slot.cached
            if cached is not None and cached.access.token != seen:
                return cached.access
            started = self._clock()
            try:
                access = await bounded(self._timeout, self._authenticate, project_id)
            except CloudAccessError as exc:
                slot.failed(exc)
                raise
            slot.succeeded(self._deadlines(access, started))
            return access

    @staticmethod
    def _deadlines(access: ProjectAccess, started: float) -> _Cached:
        """When to renew a token; counted from when its request was sent, to err early."""
        lifetime = max(0.0, access.expires_at - access.issued_at)
        margin = min(
            max(RENEW_BEFORE_EXPIRY, RENEW_FRACTION * lifetime), (1 - MIN_USE_FRACTION) * lifetime
        )
        expires = started + lifetime
        return _Cached(access=access, renew_at=expires - margin, usable_until=expires - margin / 2)

    def _slot(self, project_id: str) -> _Slot:
        slot = self._slots.get(project_id)
        if slot is None:
            slot = self._slots[project_id] = _Slot()
        return slot


async def authenticate_scope(settings: AuthSettings, tokens: KeystoneTokens) -> list[str]:
    """Authenticate every project in scope up front and return their ids.

    This makes bad credentials fail (exit 3) before any compute call is made.
    """
    own = None if settings.projects else await tokens.own_project()
    scope = projects_in_scope(settings, own)
    for project_id in scope:
        await tokens.current(project_id)
    return scope
