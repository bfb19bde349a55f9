"""Runs through the Python API the way a user's run goes, against an in-process mock cloud.

``OS_*`` variables → openstacksdk's loader → keystoneauth1 → :class:`~bulkstop.cloud.http.
HttpCompute` over loopback → :func:`bulkstop.runner.run`, all through
:func:`bulkstop.api.run_request` (the front door's one copy of open → run → close). The
``runner`` fixture (in ``tests/integration/conftest.py``) gives a :class:`Runner` with the
machine's own configuration kept out; :func:`run_options` gives the fast options most tests run
with.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta
from typing import Any, Final

import pytest

from bulkstop.api import run_request
from bulkstop.cloud.auth import AuthSettings
from bulkstop.execute.backoff import Backoff
from bulkstop.execute.engine import Observer, RunOptions
from bulkstop.execute.gate import RetryPolicy
from bulkstop.mockcloud import MockCloud
from bulkstop.record.report import Report
from bulkstop.runner import RunRequest
from bulkstop.timespec import utc_now

#: Real backoff shape, milliseconds instead of seconds: retries stay fast and deterministic.
FAST_RETRY: Final = RetryPolicy(max_attempts=5, backoff=Backoff(base=0.01, cap=0.05))
#: Unpaced, fast retries, fast polls: what most tests run with.
FAST: Final = RunOptions(rate=0.0, retry=FAST_RETRY, poll_interval=0.05)
#: Seconds per request unless a test needs a short timeout.
REQUEST_TIMEOUT: Final = 5.0


def run_options(**fields: Any) -> RunOptions:
    """:data:`FAST` with some fields changed."""
    return replace(FAST, **fields)


class Runner:
    """Runs requests against a mock, configured only by the mock's ``OS_*`` variables."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch

    async def __call__(
        self,
        mock: MockCloud,
        request: RunRequest,
        *,
        projects: Iterable[str] | None = None,
        observer: Observer | None = None,
        handle_signals: bool = False,
        admin: bool = False,
        request_timeout: float = REQUEST_TIMEOUT,
        deadline_in: float | None = None,
    ) -> Report:
        """Run ``request`` in ``projects`` (default: every project of the mock).

        ``admin`` authenticates as the mock's admin user. ``deadline_in`` sets the rails'
        deadline that many seconds after authentication, so that a slow Keystone round trip
        cannot eat into it (the report's rails say when it was).
        """
        env = mock.os_env()
        if admin:
            env |= {"OS_USERNAME": mock.admin_username, "OS_PASSWORD": mock.admin_password}
        for name, value in env.items():
            self._monkeypatch.setenv(name, value)
        scope = tuple(mock.project_ids if projects is None else projects)

        def start_deadline(request: RunRequest) -> RunRequest:
            if deadline_in is None:
                return request
            deadline = utc_now() + timedelta(seconds=deadline_in)
            rails = replace(request.options.rails, deadline=deadline)
            return replace(request, options=replace(request.options, rails=rails))

        return await run_request(
            request,
            auth=AuthSettings(projects=scope),
            request_timeout=request_timeout,
            observer=observer,
            handle_signals=handle_signals,
            on_open=start_deadline,
        )
