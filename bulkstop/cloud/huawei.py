"""Huawei Cloud with AK/SK: where the keys come from, where the endpoints are, who signs.

With AK/SK there is no Keystone and no catalog. Keys are found in this order (the first source
that names an access key wins, and all its values come from it):

1. the clouds.yaml entry named by ``os_cloud`` (or ``$OS_CLOUD``) when its ``auth_type`` is
   ``aksk``: ``auth: {access_key, secret_key, security_token?, project_id}`` and
   ``region_name``;
2. ``OS_ACCESS_KEY``, ``OS_SECRET_KEY``, ``OS_SECURITY_TOKEN``, ``OS_PROJECT_ID``,
   ``OS_REGION_NAME`` (otcextensions' names), when no cloud is named;
3. ``HUAWEICLOUD_SDK_AK``, ``HUAWEICLOUD_SDK_SK``, ``HUAWEICLOUD_SDK_PROJECT_ID`` (Huawei SDK's
   names; the region then from ``OS_REGION_NAME``), when no cloud is named.

Otherwise the configuration is Keystone's (:mod:`bulkstop.cloud.auth`). Explicit settings
(``projects``, ``region_name``, ``endpoint``) override every source.

Endpoints come from the region, or from templates with ``{project_id}`` (and ``{service}``, for
the batch API) placeholders:

* native v2.1: :data:`NATIVE_TEMPLATE`, for ECS and bare metal alike;
* batch v1 and jobs: :data:`BATCH_TEMPLATE`, ``{service}`` being ``bms`` or ``ecs``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

from bulkstop.cloud import aksk
from bulkstop.cloud.aksk import AkSkCredentials
from bulkstop.cloud.auth import (
    AuthSettings,
    ProjectAccess,
    TlsSettings,
    config_loader,
    projects_in_scope,
)
from bulkstop.errors import AuthError, ConfigError
from bulkstop.identifiers import validate_project_id
from bulkstop.models import ErrorInfo

#: The native (Nova v2.1) endpoint of a region; bare metal has none of its own.
NATIVE_TEMPLATE: Final = "https://ecs.{region}.myhuaweicloud.com/v2.1/{project_id}"
#: The batch (v1) endpoint of a region and service (``bms`` or ``ecs``); jobs live there too.
BATCH_TEMPLATE: Final = "https://{service}.{region}.myhuaweicloud.com/v1/{project_id}"
#: The services of the batch API.
SERVICES: Final = ("bms", "ecs")
#: The auth_type of a clouds.yaml entry that holds AK/SK.
AUTH_TYPE: Final = "aksk"
#: A refusal whose answer is dated further than this (seconds) from our clock blames the clock.
CLOCK_SKEW_LIMIT: Final = 300.0

_HOW_TO_CONFIGURE: Final = (
    "give the clouds.yaml entry auth_type: aksk with auth: {access_key, secret_key, project_id} "
    "and region_name, or set OS_ACCESS_KEY, OS_SECRET_KEY, OS_PROJECT_ID and OS_REGION_NAME"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AkSkConfig:
    """AK/SK credentials and where to use them, as configured (see the module docstring)."""

    credentials: AkSkCredentials
    #: The configured project (``--project`` overrides it).
    project_id: str | None
    region: str | None
    #: Where the keys came from, for messages ("clouds.yaml entry 'x'", "OS_ACCESS_KEY"...).
    source: str
    #: Native endpoint template instead of the region's.
    endpoint: str | None = None


def load_aksk(
    settings: AuthSettings, environ: Mapping[str, str] | None = None
) -> AkSkConfig | None:
    """The AK/SK configuration, or ``None`` when the configuration is Keystone's.

    Raises ConfigError when an AK/SK source is incomplete.
    """
    env = os.environ if environ is None else environ
    cloud = settings.os_cloud or env.get("OS_CLOUD")
    found: tuple[str, dict[str, Any]] | None
    if cloud:
        found = _from_clouds_yaml(cloud)
    elif env.get("OS_ACCESS_KEY"):
        found = (
            "OS_ACCESS_KEY",
            {
                "access_key": env.get("OS_ACCESS_KEY"),
                "secret_key": env.get("OS_SECRET_KEY"),
                "security_token": env.get("OS_SECURITY_TOKEN"),
                "project_id": env.get("OS_PROJECT_ID"),
                "region_name": env.get("OS_REGION_NAME"),
            },
        )
    elif env.get("HUAWEICLOUD_SDK_AK"):
        found = (
            "HUAWEICLOUD_SDK_AK",
            {
                "access_key": env.get("HUAWEICLOUD_SDK_AK"),
                "secret_key": env.get("HUAWEICLOUD_SDK_SK"),
                "project_id": env.get("HUAWEICLOUD_SDK_PROJECT_ID"),
                "region_name": env.get("OS_REGION_NAME"),
            },
        )
    else:
        found = None
    if found is None:
        return None
    source, values = found
    if not values.get("access_key") or not values.get("secret_key"):
        raise ConfigError(f"{source} gives no secret key; {_HOW_TO_CONFIGURE}")
    project_id = _text(values, "project_id")
    if project_id is not None:
        try:
            validate_project_id(project_id)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
    return AkSkConfig(
        credentials=AkSkCredentials(
            access_key=str(values["access_key"]),
            secret_key=str(values["secret_key"]),
            security_token=_text(values, "security_token"),
        ),
        project_id=project_id,
        region=settings.region_name or _text(values, "region_name"),
        source=source,
        endpoint=settings.endpoint,
    )


def _text(values: Mapping[str, Any], key: str) -> str | None:
    value = values.get(key)
    return str(value) if value else None


def _from_clouds_yaml(cloud: str) -> tuple[str, dict[str, Any]] | None:
    """The AK/SK values of a clouds.yaml entry, ``None`` if it is not an AK/SK entry."""
    os_config, os_exc = config_loader()

    try:
        # validate=False: keystoneauth knows no "aksk" plugin; the entry is read, not loaded.
        region = os_config.OpenStackConfig(app_name="bulkstop").get_one(cloud=cloud, validate=False)
    except (os_exc.ConfigException, ValueError, TypeError, AttributeError, LookupError):
        return None  # not ours to judge: the Keystone loader says what is wrong, as always
    config = region.config
    if str(config.get("auth_type") or "") != AUTH_TYPE:
        return None
    auth = dict(config.get("auth") or {})
    return f"clouds.yaml entry {cloud!r}", {
        "access_key": auth.get("access_key") or auth.get("ak"),
        "secret_key": auth.get("secret_key") or auth.get("sk"),
        "security_token": auth.get("security_token") or auth.get("token"),
        "project_id": auth.get("project_id"),
        "region_name": config.get("region_name"),
    }


def expand(template: str, *, project_id: str, region: str | None, service: str = "") -> str:
    """A URL template with ``{project_id}``, ``{region}`` and ``{service}`` filled in."""
    url = template.replace("{project_id}", project_id).replace("%(project_id)s", project_id)
    url = url.replace("{service}", service)
    if "{region}" in url:
        if not region:
            raise ConfigError(
                "no region is configured: set region_name in clouds.yaml or pass `region_name`"
            )
        url = url.replace("{region}", region)
    return url.rstrip("/")


def batch_url(template: str | None, *, project_id: str, region: str | None, service: str) -> str:
    """The batch API's base URL of one project and service (``bms`` or ``ecs``)."""
    if service not in SERVICES:
        raise ValueError(f"service must be one of {', '.join(SERVICES)}; got {service!r}")
    return expand(template or BATCH_TEMPLATE, project_id=project_id, region=region, service=service)


class AkSkAccess:
    """Signs every compute request with AK/SK; the token source and signer of :class:`HttpCompute`.

    Each project's requests carry its own ``X-Project-Id``. Nothing can be renewed: a 401 means
    the keys are refused (or expired, for temporary keys), and :meth:`renew` says why in one line.
    ``wall_clock`` (Unix time) dates the signatures and judges the answer's ``Date``.
    """

    def __init__(self, config: AkSkConfig, *, wall_clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.tls = TlsSettings()
        self._wall_clock = wall_clock
        self._access: dict[str, ProjectAccess] = {}
        self._refusals: dict[str, str] = {}

    def scope(self, settings: AuthSettings) -> list[str]:
        """The project ids to act in (``--project`` or the configured project)."""
        if settings.all_projects:
            raise ConfigError("AK/SK credentials cannot list across all projects")
        return projects_in_scope(settings, self.config.project_id)

    async def current(self, project_id: str) -> ProjectAccess:
        """The project's endpoint (no token: requests are signed)."""
        access = self._access.get(project_id)
        if access is None:
            url = expand(
                self.config.endpoint or NATIVE_TEMPLATE,
                project_id=project_id,
                region=self.config.region,
            )
            now = self._wall_clock()
            access = self._access[project_id] = ProjectAccess(
                project_id=project_id, token="", compute_url=url, issued_at=now, expires_at=now
            )
        return access

    async def renew(self, project_id: str, *, rejected_token: str | None = None) -> ProjectAccess:
        """AK/SK cannot be renewed: raise AuthError with the cause of the refusal."""
        cause = self._refusals.get(project_id, "the signature was refused")
        raise AuthError(
            f"the cloud refused the AK/SK signature of {self.config.source} for project "
            f"{project_id}: {cause}"
        )

    async def aclose(self) -> None:
        """Nothing to release."""

    def sign(self, project_id: str, method: str, url: str, body: bytes | None) -> Mapping[str, str]:
        """Headers that sign this request (see :func:`bulkstop.cloud.aksk.sign`)."""
        signed = aksk.sign(
            self.config.credentials,
            method=method,
            url=url,
            project_id=project_id,
            body=body or b"",
            content_type="application/json" if body is not None else None,
            now=datetime.fromtimestamp(self._wall_clock(), tz=UTC),
        )
        return signed.headers

    def refused(self, project_id: str, error: ErrorInfo | None, server_date: str | None) -> None:
        """Remember why the cloud refused a signature, for :meth:`renew`'s message."""
        said = f"{error.code}: {error.message}" if error is not None else "HTTP 401"
        skew = _skew(server_date, self._wall_clock())
        if skew is not None and abs(skew) > CLOCK_SKEW_LIMIT:
            said += (
                f" (the local clock is off by {abs(skew):.0f} s from the cloud's: "
                "signatures are dated, so fix the clock)"
            )
        self._refusals[project_id] = said


def _skew(server_date: str | None, now: float) -> float | None:
    """Seconds our clock is ahead of the answer's ``Date`` (None when it has none)."""
    if not server_date:
        return None
    try:
        return now - parsedate_to_datetime(server_date).timestamp()
    except (TypeError, ValueError):
        return None
