"""Nova's server and flavor records, shaped by microversion and by who asks.

What each microversion adds to a server record (Nova's API reference, checked against
tempest's ``tempest.lib.api_schema.response.compute`` schemas):

=========  ==============================================================================
2.1        the base record; admins also see ``OS-EXT-SRV-ATTR:host``, ``:instance_name``,
           ``:hypervisor_hostname``
2.3        admins also see ``OS-EXT-SRV-ATTR:reservation_id``, ``:launch_index``,
           ``:kernel_id``, ``:ramdisk_id``, ``:hostname``, ``:root_device_name``,
           ``:user_data``
2.9        ``locked``
2.16       ``host_status`` (admins)
2.19       ``description``
2.26       ``tags``
2.47       the flavor is embedded (``vcpus``, ``ram``, ``disk``, ``ephemeral``, ``swap``,
           ``original_name``, ``extra_specs``) instead of ``{id, links}``
2.63       ``trusted_image_certificates``
2.71       ``server_groups`` (``GET /servers/{id}`` only, not the detail listing)
2.73       ``locked_reason``
2.90       ``OS-EXT-SRV-ATTR:hostname`` for everyone
2.96       ``pinned_availability_zone``
=========  ==============================================================================

``progress`` appears only in Nova's progress statuses, ``fault`` only for ERROR servers that
have one (a never-scheduled server: "No valid host was found.").

Flavors (``GET /flavors[/detail]``, ``GET /flavors/{id}``): ``description`` from 2.55,
``extra_specs`` in detail from 2.61, ``swap`` an integer from 2.75 (``""`` for none before).

A record depends only on the *shape* of the microversion (the last threshold at or below it),
so a server caches one JSON text per (shape, admin, show) it has been asked for.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .state import MockServer

Version = tuple[int, int]

EXTENDED_ATTRS_VERSION: Final[Version] = (2, 3)
LOCKED_VERSION: Final[Version] = (2, 9)
HOST_STATUS_VERSION: Final[Version] = (2, 16)
DESCRIPTION_VERSION: Final[Version] = (2, 19)
TAGS_VERSION: Final[Version] = (2, 26)
EMBEDDED_FLAVOR_VERSION: Final[Version] = (2, 47)
FLAVOR_DESCRIPTION_VERSION: Final[Version] = (2, 55)
FLAVOR_EXTRA_SPECS_VERSION: Final[Version] = (2, 61)
TRUSTED_CERTS_VERSION: Final[Version] = (2, 63)
SERVER_GROUPS_VERSION: Final[Version] = (2, 71)
LOCKED_REASON_VERSION: Final[Version] = (2, 73)
INTEGER_SWAP_VERSION: Final[Version] = (2, 75)
HOSTNAME_FOR_ALL_VERSION: Final[Version] = (2, 90)
PINNED_AZ_VERSION: Final[Version] = (2, 96)
#: Every microversion at which a server or flavor record changes shape.
SHAPES: Final[tuple[Version, ...]] = (
    (2, 1),
    EXTENDED_ATTRS_VERSION,
    LOCKED_VERSION,
    HOST_STATUS_VERSION,
    DESCRIPTION_VERSION,
    TAGS_VERSION,
    EMBEDDED_FLAVOR_VERSION,
    FLAVOR_DESCRIPTION_VERSION,
    FLAVOR_EXTRA_SPECS_VERSION,
    TRUSTED_CERTS_VERSION,
    SERVER_GROUPS_VERSION,
    LOCKED_REASON_VERSION,
    INTEGER_SWAP_VERSION,
    HOSTNAME_FOR_ALL_VERSION,
    PINNED_AZ_VERSION,
)
#: Statuses whose record carries ``progress`` (Nova's ``_progress_statuses``).
PROGRESS_STATUSES: Final = frozenset(
    {"ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING"}
)
AVAILABILITY_ZONE: Final = "nova"
IMAGE_ID: Final = "70a599e0-31e7-49b7-b260-868f441e862b"
NO_VALID_HOST: Final = "No valid host was found. There are not enough hosts available."
_HOSTNAME_JUNK: Final = re.compile(r"[^a-z0-9-]+")


def shape(version: Version) -> Version:
    """The last microversion at or below ``version`` where records change shape."""
    return SHAPES[bisect.bisect_right(SHAPES, version) - 1]


@dataclass(frozen=True, slots=True, kw_only=True)
class View:
    """Who asks, and how: the record's microversion shape, an admin token, a single GET."""

    version: Version
    admin: bool = False
    #: ``GET /servers/{id}`` (``server_groups`` from 2.71) rather than the detail listing.
    show: bool = False

    @classmethod
    def of(cls, version: Version, *, admin: bool = False, show: bool = False) -> View:
        """The view of a request (its version reduced to the shape, the cache key)."""
        shaped = shape(version)
        return cls(version=shaped, admin=admin, show=show and shaped >= SERVER_GROUPS_VERSION)


@dataclass(frozen=True, slots=True, kw_only=True)
class Flavor:
    """A Nova flavor."""

    id: str
    name: str
    vcpus: int
    ram: int
    disk: int
    ephemeral: int = 0
    swap: int = 0
    description: str | None = None
    extra_specs: Mapping[str, str] = field(default_factory=dict)

    def links(self, base_url: str, project_id: str) -> list[dict[str, str]]:
        """Nova's self and bookmark links."""
        return [
            {"href": f"{base_url}/v2.1/{project_id}/flavors/{self.id}", "rel": "self"},
            {"href": f"{base_url}/{project_id}/flavors/{self.id}", "rel": "bookmark"},
        ]

    def summary(self, base_url: str, project_id: str, version: Version) -> dict[str, Any]:
        """The record of ``GET /flavors``."""
        record: dict[str, Any] = {
            "id": self.id,
            "links": self.links(base_url, project_id),
            "name": self.name,
        }
        if version >= FLAVOR_DESCRIPTION_VERSION:
            record["description"] = self.description
        return record

    def detail(self, base_url: str, project_id: str, version: Version) -> dict[str, Any]:
        """The record of ``GET /flavors/detail`` and ``GET /flavors/{id}``."""
        record = self.summary(base_url, project_id, version)
        swap: int | str = self.swap if self.swap or version >= INTEGER_SWAP_VERSION else ""
        record |= {
            "OS-FLV-DISABLED:disabled": False,
            "OS-FLV-EXT-DATA:ephemeral": self.ephemeral,
            "disk": self.disk,
            "os-flavor-access:is_public": True,
            "ram": self.ram,
            "rxtx_factor": 1.0,
            "swap": swap,
            "vcpus": self.vcpus,
        }
        if version >= FLAVOR_EXTRA_SPECS_VERSION:
            record["extra_specs"] = dict(self.extra_specs)
        return record

    def embedded(self) -> dict[str, Any]:
        """The flavor as a server record embeds it from 2.47."""
        return {
            "disk": self.disk,
            "ephemeral": self.ephemeral,
            "extra_specs": dict(self.extra_specs),
            "original_name": self.name,
            "ram": self.ram,
            "swap": self.swap,
            "vcpus": self.vcpus,
        }


#: devstack's default flavors (the mock's flavors API serves these).
FLAVORS: Final[Mapping[str, Flavor]] = MappingProxyType(
    {
        f.id: f
        for f in (
            Flavor(id="1", name="m1.tiny", vcpus=1, ram=512, disk=1),
            Flavor(id="2", name="m1.small", vcpus=1, ram=2048, disk=20),
            Flavor(id="3", name="m1.medium", vcpus=2, ram=4096, disk=40),
            Flavor(id="4", name="m1.large", vcpus=4, ram=8192, disk=80),
            Flavor(id="5", name="m1.xlarge", vcpus=8, ram=16384, disk=160),
        )
    }
)
DEFAULT_FLAVOR: Final = "1"


def hostname(name: str) -> str:
    """Nova's sanitized hostname of a display name."""
    return _HOSTNAME_JUNK.sub("-", name.lower()).strip("-") or "server"


def fixed_ip(number: int) -> str:
    """The fixed IPv4 address of the n-th server."""
    return f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"


def server_record(server: MockServer, base_url: str, view: View) -> dict[str, Any]:
    """The Nova record of ``server`` (state already settled by the caller) for ``view``."""
    version = view.version
    n = server.number
    host = server.host
    pid = server.project_id
    status = server.status
    flavor = FLAVORS.get(server.flavor_id, FLAVORS[DEFAULT_FLAVOR])
    record: dict[str, Any] = {
        "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": AVAILABILITY_ZONE,
        "OS-EXT-STS:power_state": server.power_state,
        "OS-EXT-STS:task_state": server.task_state,
        "OS-EXT-STS:vm_state": server.vm_state,
        "OS-SRV-USG:launched_at": server.created.replace("Z", ".000000") if host else None,
        "OS-SRV-USG:terminated_at": None,
        "accessIPv4": "",
        "accessIPv6": "",
        "addresses": {
            "private": [
                {
                    "OS-EXT-IPS-MAC:mac_addr": f"fa:16:3e:{n >> 16 & 255:02x}:"
                    f"{n >> 8 & 255:02x}:{n & 255:02x}",
                    "OS-EXT-IPS:type": "fixed",
                    "addr": fixed_ip(n),
                    "version": 4,
                }
            ]
        }
        if host
        else {},
        "config_drive": "",
        "created": server.created,
        "flavor": {
            "id": flavor.id,
            "links": [{"href": f"{base_url}/{pid}/flavors/{flavor.id}", "rel": "bookmark"}],
        },
        "hostId": hashlib.sha224((pid + host).encode()).hexdigest() if host else "",
        "id": server.id,
        "image": {
            "id": IMAGE_ID,
            "links": [{"href": f"{base_url}/{pid}/images/{IMAGE_ID}", "rel": "bookmark"}],
        },
        "key_name": None,
        "links": server.links(base_url),
        "metadata": dict(server.metadata),
        "name": server.name,
        "os-extended-volumes:volumes_attached": [],
        "security_groups": [{"name": "default"}],
        "status": status,
        "tenant_id": pid,
        "updated": server.updated,
        "user_id": server.user_id,
    }
    if status in PROGRESS_STATUSES:
        record["progress"] = 0
    if status == "ERROR" and not host:
        record["fault"] = {"code": 500, "created": server.updated, "message": NO_VALID_HOST}
    if view.admin:
        record |= {
            "OS-EXT-SRV-ATTR:host": host,
            "OS-EXT-SRV-ATTR:hypervisor_hostname": host,
            "OS-EXT-SRV-ATTR:instance_name": f"instance-{n + 1:08x}",
        }
        if version >= EXTENDED_ATTRS_VERSION:
            record |= {
                "OS-EXT-SRV-ATTR:hostname": hostname(server.name),
                "OS-EXT-SRV-ATTR:kernel_id": "",
                "OS-EXT-SRV-ATTR:launch_index": 0,
                "OS-EXT-SRV-ATTR:ramdisk_id": "",
                "OS-EXT-SRV-ATTR:reservation_id": f"r-{server.id[:8]}",
                "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda" if host else None,
                "OS-EXT-SRV-ATTR:user_data": None,
            }
        if version >= HOST_STATUS_VERSION:
            record["host_status"] = "UP" if host else ""
    elif version >= HOSTNAME_FOR_ALL_VERSION:
        record["OS-EXT-SRV-ATTR:hostname"] = hostname(server.name)
    if version >= LOCKED_VERSION:
        record["locked"] = server.locked
    if version >= DESCRIPTION_VERSION:
        record["description"] = None
    if version >= TAGS_VERSION:
        record["tags"] = sorted(server.tags)
    if version >= EMBEDDED_FLAVOR_VERSION:
        record["flavor"] = flavor.embedded()
    if version >= TRUSTED_CERTS_VERSION:
        record["trusted_image_certificates"] = None
    if view.show and version >= SERVER_GROUPS_VERSION:
        record["server_groups"] = []
    if version >= LOCKED_REASON_VERSION:
        record["locked_reason"] = None
    if version >= PINNED_AZ_VERSION:
        record["pinned_availability_zone"] = None
    return record
