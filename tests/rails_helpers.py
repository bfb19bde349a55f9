"""Shared by the safety-rail tests through the Python API and through the command line.

:data:`PROTECTION_FLEET` is the fleet of the protection tests; the other helpers read what the
in-process mock cloud received from its request journal, by server name (see :mod:`fleets`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from fleets import TAG, server

from bulkstop.mockcloud import MockCloud, RequestRecord
from bulkstop.models import Outcome
from bulkstop.select.selector import PROTECT_TAG

#: The projects of the rails' fleets (``p2`` exists even if empty).
RAILS_PROJECTS: Final = ("p0", "p1", "p2")
#: The prefix of an exemption tag.
EXEMPT: Final = "bulkstop:exempt-until="

#: A fleet with every kind of protection, and two servers that may be stopped: (fleet entry,
#: expected outcome, expected reason).
PROTECTION_FLEET: Final = (
    (server("plain"), Outcome.ACCEPTED, None),
    (server("past", "p1", tags=(TAG, f"{EXEMPT}2000-01-01")), Outcome.ACCEPTED, None),
    (server("protected", tags=(TAG, PROTECT_TAG)), Outcome.EXCLUDED, f"tag {PROTECT_TAG}"),
    (server("kept", "p1", tags=(TAG, "keep-on")), Outcome.EXCLUDED, "tag keep-on"),
    (server("excluded", "p2", tags=(TAG, "no-touch")), Outcome.EXCLUDED, "tag no-touch"),
    (
        server("future", "p1", tags=(TAG, f"{EXEMPT}2999-01-01")),
        Outcome.EXCLUDED,
        "exempt until 2999-01-02T00:00:00.000Z",
    ),
    (
        server("future-hour", "p2", tags=(TAG, f"{EXEMPT}2999-01-01T06:00Z")),
        Outcome.EXCLUDED,
        "exempt until 2999-01-01T06:00:00.000Z",
    ),
    (
        server("unreadable", tags=(TAG, f"{EXEMPT}soon")),
        Outcome.EXCLUDED,
        f"unreadable exemption tag '{EXEMPT}soon'",
    ),
    (server("locked", "p2", locked=True), Outcome.SKIPPED, "locked"),
)


def names(mock: MockCloud, ids: Iterable[str | None]) -> list[str]:
    """Server names for ids, in the given order."""
    return [mock.servers[i].name for i in ids if i is not None]


def stop_requests(mock: MockCloud) -> list[RequestRecord]:
    """Every os-stop the cloud received, in order of arrival."""
    return sorted(
        (r for r in mock.requests if r.kind == "action" and r.action == "os-stop"),
        key=lambda r: r.t,
    )


def stopped(mock: MockCloud) -> list[str]:
    """Names of the servers that received an os-stop, first arrival first, each once."""
    return list(dict.fromkeys(names(mock, (r.server_id for r in stop_requests(mock)))))


def accepted(mock: MockCloud) -> set[str]:
    """Names of the servers whose os-stop the cloud accepted."""
    return set(names(mock, mock.accepted_stops()))


def no_action_sent(mock: MockCloud) -> bool:
    """True when the cloud received no action request at all."""
    return not [r for r in mock.requests if r.kind == "action"]
