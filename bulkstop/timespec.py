"""Durations (``90s``, ``25m``, ``1h30m``) and points in time (ISO 8601) as users write them.

Used by ``--deadline``, ``--plan-max-age`` and the ``bulkstop:exempt-until=`` tag. Pure
functions: every parser raises ``ValueError`` with a message fit for the user.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

_DURATION: Final = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?")
_UNITS: Final = (86400, 3600, 60, 1)


def parse_duration(text: str) -> timedelta:
    """``90s``, ``25m``, ``1h30m``, ``2d``, or plain seconds (``45``) → a positive timedelta."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(value)
        if not value or match is None:
            raise ValueError(f"not a duration: {text!r} (examples: 90s, 25m, 1h30m, 2d)")
        seconds = sum(
            float(part) * unit for part, unit in zip(match.groups(), _UNITS, strict=True) if part
        )
    if seconds <= 0:
        raise ValueError(f"a duration must be positive: {text!r}")
    return timedelta(seconds=seconds)


def parse_moment(text: str, *, end_of_day: bool = False) -> datetime:
    """An ISO 8601 date or date-time → aware UTC datetime.

    A date-time without an offset is taken as UTC (servers and cron hosts disagree about local
    time; UTC is the one reading that is the same everywhere). A bare date means its start, or
    with ``end_of_day`` the start of the next day (``exempt-until=2026-11-28`` covers all of the
    28th).
    """
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime.combine(day, time(), tzinfo=UTC)
            return moment + timedelta(days=1) if end_of_day else moment
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not an ISO 8601 date or time: {text!r} (e.g. 2026-11-28 or 2026-11-28T06:00Z)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_deadline(text: str, *, now: datetime) -> datetime:
    """``--deadline``: a duration from ``now`` (``25m``) or an ISO 8601 time; must be ahead."""
    try:
        moment = now + parse_duration(text)
    except ValueError:
        try:
            moment = parse_moment(text)
        except ValueError:
            raise ValueError(
                f"not a duration or an ISO 8601 time: {text!r} (e.g. 25m, 1h30m, 2026-11-28T06:00Z)"
            ) from None
    if moment <= now:
        raise ValueError(f"the deadline {moment.isoformat()} has already passed")
    return moment


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """ISO 8601 with a ``Z``, to the millisecond."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
