"""``Observers``: several observers as one, in order, each hook only where it is overridden."""

from __future__ import annotations

from bulkstop.execute.observer import Observer, Observers
from bulkstop.models import Outcome, ServerResult

RESULT = ServerResult(id="s1", project_id="p1", name="one", outcome=Outcome.STOPPED)


class Recording(Observer):
    def __init__(self, name: str, heard: list[str]) -> None:
        self.name, self.heard = name, heard

    def finished(self, result: ServerResult) -> None:
        self.heard.append(f"{self.name} finished {result.id}")

    def halted(self, reason: str) -> None:
        self.heard.append(f"{self.name} halted: {reason}")


class OnlyAnswers(Observer):
    def __init__(self, heard: list[str]) -> None:
        self.heard = heard

    def answered(self, scope: str, *, throttled: bool, hold: float | None) -> None:
        self.heard.append(f"answered {scope} throttled={throttled} hold={hold}")


def test_every_hook_reaches_the_observers_that_override_it_in_order() -> None:
    heard: list[str] = []
    both = Observers(Recording("a", heard), None, OnlyAnswers(heard), Recording("b", heard))
    both.finished(RESULT)
    both.answered("p1", throttled=True, hold=2.0)
    both.halted("deadline")
    both.sending(None)  # type: ignore[arg-type]  # nobody overrides it: nothing is called
    assert heard == [
        "a finished s1",
        "b finished s1",
        "answered p1 throttled=True hold=2.0",
        "a halted: deadline",
        "b halted: deadline",
    ]


def test_observers_nest() -> None:
    heard: list[str] = []
    Observers(Observers(Recording("inner", heard)), Recording("outer", heard)).finished(RESULT)
    assert heard == ["inner finished s1", "outer finished s1"]
