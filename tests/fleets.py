"""Exact fleets for the mock cloud, as fleet documents (see ``bulkstop/mockcloud/fleet.py``).

Servers are named; :func:`sid` turns a name into its stable id, so a test can state every
expected outcome by name::

    mock = await make_mock_cloud(fleet=fleet(server("a"), server("off", "p1", vm_state="stopped")))
    await stop(mock, TAGGED)
    assert mock.servers[sid("a")].task_state == "powering-off"
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, Final

from bulkstop.mockcloud import MockCloud
from bulkstop.select.selector import Selector

#: The tag the test fleets' servers carry unless told otherwise, and its selector.
TAG: Final = "nightly-stop"
TAGGED: Final = Selector(tags=(TAG,))
#: The projects a fleet declares unless told otherwise.
DEFAULT_PROJECTS: Final = ("p0", "p1")


def sid(name: str) -> str:
    """The id of a named test server (a stable UUID)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bulkstop-test:{name}"))


def server(
    name: str, project: str = "p0", *, tags: Iterable[str] = (TAG,), **state: Any
) -> dict[str, Any]:
    """One fleet-document server: active and tagged unless ``state``/``tags`` say otherwise."""
    return {"id": sid(name), "name": name, "project": project, "tags": list(tags), **state}


def fleet(*servers: dict[str, Any], projects: Iterable[str] = DEFAULT_PROJECTS) -> dict[str, Any]:
    """A fleet document: the servers in the order given, listed in that order by the mock.

    ``projects`` exist even without a server (in that order, ids derived from their names); a
    project that only a server names is added after them by the mock.
    """
    declared = [{"id": uuid.uuid5(uuid.NAMESPACE_URL, p).hex, "name": p} for p in projects]
    return {"projects": declared, "servers": list(servers)}


def pid(mock: MockCloud, name: str) -> str:
    """A project's id by name."""
    return next(p.id for p in mock.projects if p.name == name)
