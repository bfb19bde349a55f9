"""Selectors: the client-side re-check is exact set logic, and eligibility follows Nova."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fakes import make_server
from hypothesis import given
from hypothesis import strategies as st

from bulkstop.errors import UsageError
from bulkstop.models import Outcome
from bulkstop.plan.eligibility import START, STOP, classify
from bulkstop.select.selector import PROTECT_TAG, Selector

TAGS = st.sampled_from(["a", "b", "c", "env=prod", "nightly-stop", PROTECT_TAG])
tag_sets = st.frozensets(TAGS, max_size=5)

NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)


class TestMatching:
    """``--tag`` is all-of, ``--any-tag`` is any-of, and they combine with AND."""

    @given(tag_sets, st.frozensets(TAGS, min_size=1, max_size=3), st.frozensets(TAGS, max_size=3))
    def test_matches_is_set_logic(
        self, server_tags: frozenset[str], all_of: frozenset[str], any_of: frozenset[str]
    ) -> None:
        selector = Selector(tags=tuple(sorted(all_of)), any_tags=tuple(sorted(any_of)))
        server = make_server(1, tags=server_tags)
        expected = all_of <= server_tags and (not any_of or bool(any_of & server_tags))
        assert selector.matches(server) is expected

    @given(tag_sets, st.frozensets(TAGS, max_size=3))
    def test_guard_tags_always_include_protect(
        self, server_tags: frozenset[str], excluded: frozenset[str]
    ) -> None:
        selector = Selector(select_all=True, exclude_tags=tuple(sorted(excluded)))
        entry = classify(
            make_server(1, tags=server_tags), scope="p1", selector=selector, spec=STOP, now=NOW
        )
        hit = server_tags & (excluded | {PROTECT_TAG})
        assert (entry.outcome is Outcome.EXCLUDED) is bool(hit)
        if hit:
            assert entry.reason == f"tag {sorted(hit)[0]}"
            assert not entry.sends

    def test_record_without_tags_never_matches_a_tag_selector(self) -> None:
        server = make_server(1).__class__(id="x", project_id="p", tags=None)
        assert not Selector(tags=("a",)).matches(server)
        assert Selector(select_all=True).matches(server)

    def test_an_empty_selector_is_refused(self) -> None:
        with pytest.raises(UsageError, match="`select_all`"):
            Selector()

    def test_all_does_not_mix_with_criteria(self) -> None:
        with pytest.raises(UsageError):
            Selector(select_all=True, tags=("a",))


class TestEligibility:
    """The preconditions Nova checks, checked before sending."""

    @pytest.mark.parametrize(
        ("kwargs", "stop", "start"),
        [
            ({}, None, Outcome.ALREADY_STARTED),
            ({"vm_state": "error"}, None, Outcome.SKIPPED),
            ({"vm_state": "stopped"}, Outcome.ALREADY_STOPPED, None),
            ({"task_state": "powering-off"}, Outcome.ALREADY_STOPPED, Outcome.SKIPPED),
            (
                {"vm_state": "stopped", "task_state": "powering-on"},
                Outcome.ALREADY_STOPPED,
                Outcome.ALREADY_STARTED,
            ),
            ({"vm_state": "paused"}, Outcome.SKIPPED, Outcome.SKIPPED),
            ({"vm_state": "shelved"}, Outcome.SKIPPED, Outcome.SKIPPED),
            ({"locked": True}, Outcome.SKIPPED, Outcome.ALREADY_STARTED),
            ({"task_state": "rebooting"}, Outcome.SKIPPED, Outcome.SKIPPED),
        ],
    )
    def test_outcome_without_a_request(
        self, kwargs: dict[str, object], stop: Outcome | None, start: Outcome | None
    ) -> None:
        server = make_server(1, **kwargs)  # type: ignore[arg-type]
        selector = Selector(select_all=True)
        assert classify(server, scope="p1", selector=selector, spec=STOP, now=NOW).outcome is stop
        assert classify(server, scope="p1", selector=selector, spec=START, now=NOW).outcome is start
