"""The verdict table: what every kind of answer means (status, body and Retry-After)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkstop.cloud.verdict import (
    CODE_TABLE,
    MAX_RETRY_AFTER,
    NOT_READY,
    Kind,
    judge,
    read_failure,
)
from bulkstop.errors import AuthError, EndpointError
from bulkstop.models import ErrorInfo, Reply

NOVA_CODES = ("conflictingRequest", "itemNotFound", "forbidden", "badRequest", "computeFault")
statuses = st.one_of(st.none(), st.integers(min_value=100, max_value=599))
codes = st.one_of(
    st.sampled_from(sorted(CODE_TABLE)),
    st.sampled_from(NOVA_CODES),
    st.builds(lambda n: f"HTTP {n}", st.integers(100, 599)),
    st.text(max_size=20),
)
messages = st.one_of(
    st.text(max_size=60),
    st.builds(lambda u: f"Instance {u} is not ready", st.uuids()),
    st.builds(lambda u: f"Cannot 'stop' instance {u} while it is in vm_state stopped", st.uuids()),
)
errors = st.one_of(st.none(), st.builds(ErrorInfo, code=codes, message=messages))
retry_afters = st.one_of(st.none(), st.floats(allow_nan=False))
replies = st.builds(Reply, status=statuses, error=errors, retry_after=retry_afters)


def unlisted(reply: Reply) -> bool:
    return reply.error is None or reply.error.code not in CODE_TABLE


class TestTable:
    """Properties over every status, body shape and Retry-After."""

    @given(replies)
    def test_every_reply_gets_one_verdict_with_a_bounded_delay(self, reply: Reply) -> None:
        verdict = judge(reply)
        assert isinstance(verdict.kind, Kind)
        if verdict.delay is not None:
            assert verdict.kind in (Kind.THROTTLED, Kind.TRANSIENT)
            assert 0.0 <= verdict.delay <= MAX_RETRY_AFTER
        if reply.retry_after is not None and verdict.kind in (Kind.THROTTLED, Kind.TRANSIENT):
            assert verdict.delay == min(max(reply.retry_after, 0.0), MAX_RETRY_AFTER)

    @given(statuses, st.sampled_from(sorted(CODE_TABLE)), messages, retry_afters)
    def test_a_listed_code_means_the_same_whatever_the_status(
        self, status: int | None, code: str, message: str, retry_after: float | None
    ) -> None:
        error = ErrorInfo(code=code, message=message)
        verdict = judge(Reply(status=status, error=error, retry_after=retry_after))
        assert verdict.kind is CODE_TABLE[code].kind
        assert verdict.reason == CODE_TABLE[code].reason

    @given(replies.filter(lambda r: r.status is None or r.status >= 500).filter(unlisted))
    def test_no_answer_and_server_errors_are_transient(self, reply: Reply) -> None:
        assert judge(reply).kind is Kind.TRANSIENT

    @given(replies.filter(lambda r: r.status is not None).filter(unlisted))
    def test_status_decides_when_no_code_is_listed(self, reply: Reply) -> None:
        status = reply.status
        assert status is not None
        kind = judge(reply).kind
        if status == 429:
            assert kind is Kind.THROTTLED
        elif 200 <= status < 300:
            assert kind is (Kind.ACCEPTED if reply.error is None else Kind.FAILED)
        elif status in (401, 403, 404):
            assert (
                kind is {401: Kind.AUTH_EXPIRED, 403: Kind.FORBIDDEN, 404: Kind.NOT_FOUND}[status]
            )
        elif status == 409:
            assert kind in (Kind.SKIPPED, Kind.REREAD)
        elif status >= 500:
            assert kind is Kind.TRANSIENT

    @given(st.uuids(), st.sampled_from(("conflictingRequest", "HTTP 409")))
    def test_nova_not_ready_is_skipped_never_scheduled(self, uuid: object, code: str) -> None:
        error = ErrorInfo(code=code, message=f"Instance {uuid} is not ready")
        verdict = judge(Reply(status=409, error=error))
        assert verdict.kind is Kind.SKIPPED and verdict.reason == NOT_READY

    @given(st.uuids())
    def test_other_conflicts_are_worth_a_re_read(self, uuid: object) -> None:
        for message in (
            f"Cannot 'stop' instance {uuid} while it is in vm_state stopped",
            f"Instance {uuid} is locked",
            "",
        ):
            error = ErrorInfo(code="conflictingRequest", message=message)
            assert judge(Reply(status=409, error=error)).kind is Kind.REREAD
        assert judge(Reply(status=409)).kind is Kind.REREAD


class TestExamples:
    """The answers the docs name, one by one."""

    @pytest.mark.parametrize(
        ("status", "code", "kind"),
        [
            (202, None, Kind.ACCEPTED),
            (204, None, Kind.ACCEPTED),
            (200, "invalid_response", Kind.FAILED),
            (429, None, Kind.THROTTLED),
            (429, "HTTP 429", Kind.THROTTLED),
            (413, "overLimit", Kind.THROTTLED),
            (413, "HTTP 413", Kind.FAILED),
            (400, "APIG.0308", Kind.THROTTLED),
            (429, "APIGW.0308", Kind.THROTTLED),
            (403, "APIGW.0308", Kind.THROTTLED),
            (202, "Common.0024", Kind.THROTTLED),
            (400, "BMS.0039", Kind.ALREADY_DONE),
            (400, "Ecs.0605", Kind.SKIPPED),
            (400, "BMS.0036", Kind.REREAD),
            (400, "Ecs.0100", Kind.REREAD),
            (404, "Ecs.0114", Kind.NOT_FOUND),
            (400, "BMS.0040", Kind.NOT_FOUND),
            (409, "conflictingRequest", Kind.REREAD),
            (404, "itemNotFound", Kind.NOT_FOUND),
            (401, "unauthorized", Kind.AUTH_EXPIRED),
            (403, "forbidden", Kind.FORBIDDEN),
            (400, "badRequest", Kind.FAILED),
            (None, "timeout", Kind.TRANSIENT),
            (503, "serviceUnavailable", Kind.TRANSIENT),
            (None, None, Kind.TRANSIENT),
        ],
    )
    def test_cases(self, status: int | None, code: str | None, kind: Kind) -> None:
        error = None if code is None else ErrorInfo(code=code, message="")
        assert judge(Reply(status=status, error=error)).kind is kind

    def test_retry_after_is_clamped_for_throttles_and_server_errors(self) -> None:
        assert judge(Reply(status=429, retry_after=999999.0)).delay == MAX_RETRY_AFTER
        assert judge(Reply(status=503, retry_after=999999.0)).delay == MAX_RETRY_AFTER
        assert judge(Reply(status=429, retry_after=-5.0)).delay == 0.0
        assert judge(Reply(status=429)).delay is None
        assert judge(Reply(status=409, retry_after=30.0)).delay is None


class TestReadFailure:
    """A read that fails is a run-wide error: credentials (exit 3, auth) or the endpoint."""

    @pytest.mark.parametrize(
        ("status", "expected"),
        [(401, AuthError), (403, AuthError), (500, EndpointError), (None, EndpointError)],
    )
    def test_kind_of_error(self, status: int | None, expected: type[Exception]) -> None:
        error = ErrorInfo(code="x", message="no")
        failure = read_failure("p1", Reply(status=status, error=error), what="list servers")
        assert type(failure) is expected
        assert str(failure) == "project p1: could not list servers (x: no)"
