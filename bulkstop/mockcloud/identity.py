"""Keystone v3, as much as keystoneauth and openstacksdk need: discovery and token issue.

Served under ``/identity`` (like devstack), so the auth URL is ``{base}/identity/v3``.

* Two users, members of every project: a normal one and one with the ``admin`` role.
* Password auth (user by id, or by name + domain), scoped to a project by id or by name +
  domain; no scope means the first project (the users' default project).
* One application credential per project (it carries its own scope; asking for another
  scope is refused, as Keystone does).
* 201 with ``X-Subject-Token`` and a catalog whose compute endpoint includes the project id.
* Tokens expire at ``expires_at``; the ``token_ttl`` fault makes them stop working sooner,
  and :meth:`Identity.revoke_all` at once, so clients' renewal on 401 can be tested.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from . import bodies
from .config import MockConfig
from .faults import Injector, drip
from .fleet import user_id
from .state import Fleet, Project

DOMAIN_ID: Final = "default"
IDENTITY_VERSION: Final = "v3.14"
IDENTITY_UPDATED: Final = "2020-04-07T00:00:00Z"
IDENTITY_MEDIA_TYPE: Final = "application/vnd.openstack.identity-v3+json"
ENDPOINT_INTERFACES: Final = ("public", "internal", "admin")
MEMBER_ROLES: Final = ("member", "reader")
ADMIN_ROLE: Final = "admin"


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """A Keystone user of the mock."""

    id: str
    name: str
    password: str
    is_admin: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class AppCredential:
    """An application credential: a secret bound to one user and one project."""

    id: str
    name: str
    secret: str
    user: User
    project: Project


@dataclass(frozen=True, slots=True, kw_only=True)
class Token:
    """An issued token. ``usable_until`` (config clock) may precede ``expires_at``."""

    id: str
    user: User
    project: Project
    expires_at: str
    usable_until: float


class AuthFailure(Exception):
    """Raised inside :class:`Identity` for a request Keystone would refuse."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _iso_micro(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stable_id(*parts: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, "mockcloud:" + ":".join(parts)).hex


class Identity:
    """Users, application credentials and tokens, and the Keystone routes."""

    def __init__(
        self, *, config: MockConfig, fleet: Fleet, injector: Injector, base_url: str
    ) -> None:
        self._config = config
        self._fleet = fleet
        self._injector = injector
        self._clock = config.clock
        self.base_url = base_url
        self.auth_url = f"{base_url}/identity/v3"
        self.member = User(
            id=user_id(config.username),
            name=config.username,
            password=config.password,
            is_admin=False,
        )
        self.admin = User(
            id=user_id(config.admin_username),
            name=config.admin_username,
            password=config.admin_password,
            is_admin=True,
        )
        self._tokens: dict[str, Token] = {}

    # -- credentials -----------------------------------------------------------------------

    def app_credential(self, project: Project) -> AppCredential:
        """The member's application credential for ``project`` (stable across runs)."""
        secret = hashlib.sha256(f"{self._config.seed}:{project.id}".encode()).hexdigest()[:32]
        return AppCredential(
            id=_stable_id("appcred", project.id),
            name=f"bulkstop-{project.name}",
            secret=secret,
            user=self.member,
            project=project,
        )

    def _user(self, doc: Mapping[str, Any]) -> User:
        """The user a ``{"id"}`` or ``{"name", "domain"}`` object names; AuthFailure if none."""
        users = (self.member, self.admin)
        if "id" in doc:
            found = next((u for u in users if u.id == doc["id"]), None)
        else:
            self._check_domain(doc.get("domain"))
            found = next((u for u in users if u.name == doc.get("name")), None)
        if found is None:
            raise AuthFailure(401, bodies.KEYSTONE_UNAUTHORIZED)
        return found

    def _check_domain(self, doc: Any) -> None:
        if not isinstance(doc, Mapping):
            raise AuthFailure(400, "Expecting to find domain in user or project.")
        name = self._config.user_domain
        if doc.get("id", DOMAIN_ID) != DOMAIN_ID or doc.get("name", name) != name:
            raise AuthFailure(401, bodies.KEYSTONE_UNAUTHORIZED)

    def _authenticate(self, auth: Mapping[str, Any]) -> tuple[User, Project | None, str]:
        """Check the identity part: (user, scope it carries, method)."""
        identity = auth["identity"]
        methods = identity["methods"]
        if "application_credential" in methods:
            doc = identity["application_credential"]
            creds = [self.app_credential(p) for p in self._fleet.projects]
            if "id" in doc:
                found = next((c for c in creds if c.id == doc["id"]), None)
            else:
                user = self._user(doc.get("user", {}))
                found = next((c for c in creds if c.name == doc.get("name")), None)
                found = found if found is not None and found.user == user else None
            if found is None or found.secret != doc.get("secret"):
                raise AuthFailure(401, bodies.KEYSTONE_UNAUTHORIZED)
            if auth.get("scope"):
                raise AuthFailure(401, "Application credentials cannot request a scope.")
            return found.user, found.project, "application_credential"
        if "password" in methods:
            doc = identity["password"]["user"]
            user = self._user(doc)
            if doc.get("password") != user.password:
                raise AuthFailure(401, bodies.KEYSTONE_UNAUTHORIZED)
            return user, None, "password"
        raise AuthFailure(401, f"Attempted to authenticate with an unsupported method: {methods}")

    def _scope(self, scope: Mapping[str, Any] | None) -> Project:
        if not scope:
            return self._fleet.projects[0]
        doc = scope.get("project")
        if not isinstance(doc, Mapping):
            raise AuthFailure(401, "The mock cloud issues project-scoped tokens only.")
        if "id" in doc:
            project = next((p for p in self._fleet.projects if p.id == doc["id"]), None)
        else:
            self._check_domain(doc.get("domain"))
            project = next((p for p in self._fleet.projects if p.name == doc.get("name")), None)
        if project is None:
            raise AuthFailure(401, bodies.KEYSTONE_UNAUTHORIZED)
        return project

    # -- tokens ------------------------------------------------------------------------------

    def issue(self, user: User, project: Project) -> Token:
        """A new token for ``user`` on ``project``."""
        now = self._clock()
        lifetime = self._config.token_lifetime
        ttl = self._injector.faults(project.id).token_ttl
        token = Token(
            id=uuid.uuid4().hex,
            user=user,
            project=project,
            expires_at=_iso_micro(time.time() + lifetime),
            usable_until=now + (lifetime if ttl is None else min(ttl, lifetime)),
        )
        self._tokens[token.id] = token
        return token

    def check(self, token_id: str | None) -> Token | str:
        """The live token with this id, or why there is none (Huawei's gateway wording)."""
        if not token_id:
            return "x-auth-token not found"
        token = self._tokens.get(token_id)
        if token is None:
            return "decrypt token fail"
        if self._clock() >= token.usable_until:
            return f"token expires, expires_at: {token.expires_at}"
        return token

    def revoke_all(self) -> None:
        """Invalidate every token issued so far."""
        self._tokens.clear()

    @property
    def compute_version(self) -> str:
        """The compute URL's version: ``v2`` as Huawei's IAM lists it (Huawei mode), else v2.1."""
        return "v2" if self._config.huawei else "v2.1"

    def catalog(self, project: Project) -> list[dict[str, Any]]:
        """The service catalog of a token scoped to ``project``."""
        region = self._config.region
        services = (
            ("compute", "nova", f"{self.base_url}/{self.compute_version}/{project.id}"),
            ("identity", "keystone", f"{self.base_url}/identity"),
        )
        return [
            {
                "id": _stable_id("service", kind),
                "type": kind,
                "name": name,
                "endpoints": [
                    {
                        "id": _stable_id("endpoint", kind, interface),
                        "interface": interface,
                        "region": region,
                        "region_id": region,
                        "url": url,
                    }
                    for interface in ENDPOINT_INTERFACES
                ],
            }
            for kind, name, url in services
        ]

    def _token_body(self, token: Token, method: str) -> dict[str, Any]:
        domain = {"id": DOMAIN_ID, "name": self._config.user_domain}
        roles = [*MEMBER_ROLES, ADMIN_ROLE] if token.user.is_admin else list(MEMBER_ROLES)
        return {
            "token": {
                "methods": [method],
                "user": {
                    "id": token.user.id,
                    "name": token.user.name,
                    "domain": domain,
                    "password_expires_at": None,
                },
                "audit_ids": [token.id[:22]],
                "issued_at": _iso_micro(time.time()),
                "expires_at": token.expires_at,
                "project": {"id": token.project.id, "name": token.project.name, "domain": domain},
                "is_domain": False,
                "roles": [{"id": _stable_id("role", r), "name": r} for r in roles],
                "catalog": self.catalog(token.project),
            }
        }

    # -- routes ------------------------------------------------------------------------------

    def _version(self) -> dict[str, Any]:
        return {
            "id": IDENTITY_VERSION,
            "status": "stable",
            "updated": IDENTITY_UPDATED,
            "links": [{"rel": "self", "href": f"{self.auth_url}/"}],
            "media-types": [{"base": "application/json", "type": IDENTITY_MEDIA_TYPE}],
        }

    async def versions(self, request: web.Request) -> web.Response:
        """``GET /identity/``: the version list (300 Multiple Choices, like Keystone)."""
        return web.Response(
            status=300,
            body=bodies.dumps({"versions": {"values": [self._version()]}}),
            content_type="application/json",
            headers={"Location": f"{self.auth_url}/"},
        )

    async def version(self, request: web.Request) -> web.Response:
        """``GET /identity/v3``: the v3 version document."""
        return web.Response(
            body=bodies.dumps({"version": self._version()}), content_type="application/json"
        )

    async def tokens(self, request: web.Request) -> web.StreamResponse:
        """``POST /identity/v3/auth/tokens``: password or application-credential auth."""
        try:
            document = await request.json()
            auth = document["auth"]
            user, carried, method = self._authenticate(auth)
            project = carried or self._scope(auth.get("scope"))
        except AuthFailure as failure:
            return self._error(failure.status, failure.message)
        except (ValueError, KeyError, TypeError, AttributeError):
            return self._error(400, "The request you have made is malformed: expecting auth.")
        token = self.issue(user, project)
        response = web.Response(
            status=201,
            body=bodies.dumps(self._token_body(token, method)),
            content_type="application/json",
            headers={"X-Subject-Token": token.id},
        )
        dripping = self._injector.faults(None).drip
        return await drip(request, response, dripping) if dripping > 0 else response

    def _error(self, status: int, message: str) -> web.Response:
        headers = {"WWW-Authenticate": f'Keystone uri="{self.base_url}/identity"'}
        return web.Response(
            status=status,
            body=bodies.dumps(bodies.keystone(status, message)),
            content_type="application/json",
            headers=headers if status == 401 else None,
        )
