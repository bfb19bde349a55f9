"""Halting's cancel scopes: a halt cancels a request waiting for its turn, not one sent."""

from __future__ import annotations

import pytest

from bulkstop.execute.halt import Halting

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def halting() -> Halting:
    return Halting(deadline_at=None, max_errors=None, clock=lambda: 0.0)


async def test_a_halt_cancels_a_waiting_scope_but_not_one_on_the_wire() -> None:
    h = halting()
    with h.waiting() as waiting:
        h.on_the_wire(waiting)
        h.halt("deadline")
        assert not waiting.cancel_called  # the request went out: it finishes
        h.arm(waiting)  # a worker's next request: the halt applies to it at once
        assert waiting.cancel_called


async def test_an_armed_scope_is_cancelled_by_a_later_halt() -> None:
    h = halting()
    with h.waiting() as waiting:
        h.on_the_wire(waiting)
        h.arm(waiting)
        assert not waiting.cancel_called
        h.halt("interrupted")
        assert waiting.cancel_called
    assert h.reason == "interrupted"
