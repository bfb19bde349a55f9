"""Error bodies of every flavour, Retry-After values, and the throttle predicate."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkstop.cloud.errorbody import (
    MAX_MESSAGE_CHARS,
    ErrorBody,
    parse_error,
    parse_error_body,
    parse_retry_after,
)
from bulkstop.models import ErrorInfo

UUID = "95bf2490-5428-432c-ad9b-5e3406f869dd"
JSON = "application/json"
STOPPED = f"Cannot 'stop' instance {UUID} while it is in vm_state stopped"


def as_json(document: object) -> bytes:
    return json.dumps(document).encode()


class TestKnownShapes:
    """The documented body shapes give their own code and message."""

    @pytest.mark.parametrize(
        ("status", "fault", "message"),
        [
            (
                409,
                "conflictingRequest",
                f"Cannot 'stop' instance {UUID} while it is in vm_state stopped",
            ),
            (404, "itemNotFound", f"Instance {UUID} could not be found."),
            (403, "forbidden", "Policy doesn't allow os_compute_api:servers:stop to be performed."),
            (400, "badRequest", "Invalid input for field/attribute os-stop."),
        ],
    )
    def test_nova_faults(self, status: int, fault: str, message: str) -> None:
        body = as_json({fault: {"code": status, "message": message}})
        assert parse_error_body(status, JSON, body) == ErrorBody(
            error=ErrorInfo(code=fault, message=message)
        )

    def test_nova_over_limit_exposes_retry_after(self) -> None:
        body = as_json({"overLimit": {"code": 413, "message": "Over limit", "retryAfter": "30"}})
        parsed = parse_error_body(413, JSON, body)
        assert parsed.error == ErrorInfo(code="overLimit", message="Over limit")
        assert parsed.retry_after == "30"

    def test_numeric_retry_after_in_body_becomes_text(self) -> None:
        body = as_json({"overLimit": {"code": 429, "message": "slow", "retryAfter": 7}})
        assert parse_error_body(429, JSON, body).retry_after == "7"

    def test_retry_after_only_read_from_over_limit(self) -> None:
        body = as_json({"badRequest": {"code": 400, "message": "x", "retryAfter": "30"}})
        assert parse_error_body(400, JSON, body).retry_after is None

    def test_keystone_uses_title_as_code(self) -> None:
        body = as_json(
            {
                "error": {
                    "code": 401,
                    "title": "Unauthorized",
                    "message": "The request you have made requires authentication.",
                }
            }
        )
        assert parse_error(401, JSON, body) == ErrorInfo(
            code="Unauthorized", message="The request you have made requires authentication."
        )

    def test_keystone_without_title_falls_back_to_status(self) -> None:
        body = as_json({"error": {"code": 500, "message": "boom"}})
        assert parse_error(500, JSON, body) == ErrorInfo(code="HTTP 500", message="boom")

    def test_huawei_bms_v1(self) -> None:
        body = as_json({"error": {"code": "BMS.0040", "message": "The BMS does not exist."}})
        assert parse_error(400, JSON, body) == ErrorInfo(
            code="BMS.0040", message="The BMS does not exist."
        )

    def test_huawei_gateway(self) -> None:
        body = as_json(
            {
                "error_code": "APIG.0308",
                "error_msg": "The throttling threshold has been reached: policy user over "
                "ratelimit, limit:10, time:1 second",
                "request_id": "abc",
            }
        )
        error = parse_error(429, JSON, body)
        assert error.code == "APIG.0308"
        assert error.message.startswith("The throttling threshold has been reached")

    def test_bare_code_and_message(self) -> None:
        assert parse_error(502, JSON, as_json({"code": "GW.1", "message": "m"})) == ErrorInfo(
            code="GW.1", message="m"
        )

    def test_json_labelled_as_text_is_still_json(self) -> None:
        body = as_json({"itemNotFound": {"code": 404, "message": "gone"}})
        assert parse_error(404, "text/plain", body).code == "itemNotFound"

    def test_gateway_body_without_code_uses_status(self) -> None:
        assert parse_error(503, JSON, as_json({"error_msg": "busy"})) == ErrorInfo(
            code="HTTP 503", message="busy"
        )

    def test_null_message_shows_the_code(self) -> None:
        body = as_json({"error": {"code": "BMS.0001", "message": None}})
        assert parse_error(400, JSON, body) == ErrorInfo(code="BMS.0001", message="BMS.0001")


class TestOtherBodies:
    """Proxies, empty answers and garbage still give a readable error."""

    def test_html_title(self) -> None:
        page = b"<html><head><title>502 Bad\n  Gateway</title></head><body><h1>x</h1></body></html>"
        assert parse_error(502, "text/html", page) == ErrorInfo(
            code="HTTP 502", message="502 Bad Gateway"
        )

    def test_html_without_title_uses_first_text(self) -> None:
        page = (
            b"<html><head><style>body{color:red}</style></head>"
            b"<body><script>var x=1;</script>"
            b"<h1>Service &amp; Unavailable</h1>\n<p>later</p></body>"
        )
        assert parse_error(503, None, page).message == "Service & Unavailable later"

    def test_html_is_truncated(self) -> None:
        page = b"<html><body>" + b"word " * 10_000 + b"</body></html>"
        message = parse_error(500, "text/html", page).message
        assert len(message) == MAX_MESSAGE_CHARS
        assert message.endswith("…")

    @pytest.mark.parametrize("body", [b"", b"   \n", b"\x00\x00"])
    def test_empty_body_gives_reason_phrase(self, body: bytes) -> None:
        assert parse_error(503, None, body) == ErrorInfo(
            code="HTTP 503", message="Service Unavailable (empty body)"
        )

    def test_empty_body_with_unknown_status(self) -> None:
        assert parse_error(599, None, b"") == ErrorInfo(code="HTTP 599", message="empty body")

    def test_plain_text_collapsed(self) -> None:
        assert parse_error(500, "text/plain", b"  upstream\tconnect  error\n\n") == ErrorInfo(
            code="HTTP 500", message="upstream connect error"
        )

    def test_invalid_json_is_text(self) -> None:
        assert parse_error(500, JSON, b'{"error": ').message == '{"error":'

    def test_unexpected_json_shape_is_shown_compactly(self) -> None:
        assert parse_error(500, JSON, as_json([1, {"a": None}])) == ErrorInfo(
            code="HTTP 500", message='[1,{"a":null}]'
        )

    def test_not_utf8(self) -> None:
        error = parse_error(500, "text/plain", "Fehler: Zugriff verweigert".encode("utf-16"))
        assert error.code == "HTTP 500"
        assert "\x00" not in error.message

    def test_huge_json_is_cut_not_parsed_whole(self) -> None:
        body = as_json({"itemNotFound": {"code": 404, "message": "x" * 1_000_000}})
        error = parse_error(404, JSON, body)
        assert error.code == "HTTP 404"  # cut short, so no longer JSON
        assert len(error.message) <= MAX_MESSAGE_CHARS

    def test_deeply_nested_json_does_not_blow_the_stack(self) -> None:
        body = b"[" * 50_000 + b"]" * 50_000
        assert parse_error(500, JSON, body).code == "HTTP 500"

    def test_no_status(self) -> None:
        assert parse_error(None, None, b"junk").code == "invalid_response"


@given(
    status=st.one_of(st.none(), st.integers(min_value=100, max_value=599)),
    content_type=st.one_of(
        st.none(), st.sampled_from([JSON, "text/html", "text/plain"]), st.text()
    ),
    body=st.binary(max_size=2000),
)
def test_any_bytes_give_a_bounded_error(
    status: int | None, content_type: str | None, body: bytes
) -> None:
    error = parse_error(status, content_type, body)
    assert error.code
    assert len(error.code) <= MAX_MESSAGE_CHARS
    assert len(error.message) <= MAX_MESSAGE_CHARS
    assert error.message == error.message.strip()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@given(document=json_values, status=st.integers(min_value=400, max_value=599))
def test_any_json_gives_a_bounded_error(document: object, status: int) -> None:
    parsed = parse_error_body(status, JSON, as_json(document))
    assert parsed.error.code
    assert len(parsed.error.message) <= MAX_MESSAGE_CHARS
    assert parsed.retry_after is None or isinstance(parsed.retry_after, str)


class TestRetryAfter:
    """``Retry-After`` as delta-seconds or an HTTP date, never negative."""

    NOW = 1_700_000_000.0

    @pytest.mark.parametrize(
        ("value", "expected"),
        [("30", 30.0), (" 2 ", 2.0), ("1.5", 1.5), ("0", 0.0), ("-5", 0.0), (None, None)],
    )
    def test_delta_seconds(self, value: str | None, expected: float | None) -> None:
        assert parse_retry_after(value, now=self.NOW) == expected

    @pytest.mark.parametrize("value", ["soon", "", "inf", "nan", "1e3", "9" * 400, "1_0"])
    def test_garbage(self, value: str) -> None:
        assert parse_retry_after(value, now=self.NOW) is None

    def test_http_date_in_the_future(self) -> None:
        when = datetime.fromtimestamp(self.NOW + 120, tz=UTC)
        assert parse_retry_after(format_datetime(when, usegmt=True), now=self.NOW) == 120.0

    def test_http_date_in_the_past_is_now(self) -> None:
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=self.NOW) == 0.0

    def test_date_without_zone_is_gmt(self) -> None:
        when = datetime.fromtimestamp(self.NOW + 60, tz=UTC)
        value = format_datetime(when).replace("+0000", "-0000")
        assert parse_retry_after(value, now=self.NOW) == 60.0

    @given(value=st.text(max_size=60), now=st.floats(min_value=0, max_value=4e9))
    def test_never_raises_never_negative(self, value: str, now: float) -> None:
        seconds = parse_retry_after(value, now=now)
        assert seconds is None or seconds >= 0.0

    @given(seconds=st.integers(min_value=0, max_value=10**9))
    def test_integer_round_trip(self, seconds: int) -> None:
        assert parse_retry_after(str(seconds), now=self.NOW) == float(seconds)
