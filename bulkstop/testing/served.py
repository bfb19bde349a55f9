"""The mock cloud in this process: ``async with`` on the running loop, ``with`` from a thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Final, TypeVar

from bulkstop.mockcloud import MockCloud, MockConfig

#: Seconds the background thread may take to start or stop serving.
THREAD_TIMEOUT: Final = 10.0
_T = TypeVar("_T")


class ServedCloud:
    """A :class:`MockCloud` to serve, as a context manager of either kind.

    ``async with`` starts it on the running event loop (for asynchronous code under test);
    ``with`` serves it from an event loop in a background thread, so synchronous code
    (openstacksdk, a script, a command run in-process) can talk to it. Both hand back the
    running :class:`MockCloud` and close it on the way out, whatever happened.
    """

    def __init__(self, config: MockConfig) -> None:
        #: The mock (its fleet exists already; its URLs once started).
        self.mock = MockCloud(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def __aenter__(self) -> MockCloud:
        await self.mock.start()
        return self.mock

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.mock.aclose()

    def __enter__(self) -> MockCloud:
        return self.start_thread()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_thread()

    def start_thread(self) -> MockCloud:
        """Serve from a background thread's event loop; returns the running mock."""
        if self._thread is not None:
            raise RuntimeError("the mock cloud is already served from a thread")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="bulkstop-mock-cloud", daemon=True
        )
        self._thread.start()
        try:
            self._run(self.mock.start())
        except BaseException:
            self.stop_thread()
            raise
        return self.mock

    def stop_thread(self) -> None:
        """Stop serving and end the thread (idempotent)."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            if self.mock.running:
                asyncio.run_coroutine_threadsafe(self.mock.aclose(), loop).result(THREAD_TIMEOUT)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(THREAD_TIMEOUT)
            loop.close()

    def _run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(THREAD_TIMEOUT)


def mock_cloud(config: MockConfig | None = None, /, **options: Any) -> ServedCloud:
    """A mock cloud to serve with ``with`` (thread) or ``async with`` (running loop).

    Give a :class:`MockConfig`, or its fields as keywords: ``servers``, ``projects``, ``seed``,
    ``fleet`` (an exact fleet: a JSON file path or the parsed document), ``faults``,
    ``project_faults``, ``never_scheduled``, ``transition_delay``, ``clock``, ...
    """
    if config is not None and options:
        raise TypeError("give a MockConfig or its fields as keywords, not both")
    return ServedCloud(config or MockConfig(**options))
