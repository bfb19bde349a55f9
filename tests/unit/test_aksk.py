"""The AK/SK signer against Huawei's own ``huaweicloudsdkcore`` Signer and the published vector."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulkstop.cloud import aksk
from bulkstop.cloud.aksk import AkSkCredentials

sdk_signer = pytest.importorskip("huaweicloudsdkcore.signer.signer")
sdk_request = pytest.importorskip("huaweicloudsdkcore.sdk_request")

AK = "AKEXAMPLE0000000000"
SK = "SKEXAMPLE000000000000000000000000000000"
PID = "0123456789abcdef0123456789abcdef"
VECTOR_DATE = datetime(2025, 1, 1, tzinfo=UTC)
VECTOR_BODY = (
    b'{"os-stop":{"type":"HARD","servers":[{"id":"616fb98f-46ca-475e-917e-2563e5a8cd19"}]}}'
)


class _SdkCredentials:
    def __init__(self, ak: str, sk: str) -> None:
        self.ak, self.sk = ak, sk


def sdk_authorization(
    *,
    credentials: AkSkCredentials,
    method: str,
    host: str,
    path: str,
    params: list[tuple[str, str]],
    body: bytes,
    project_id: str,
    date: str,
) -> tuple[str, str]:
    """(Authorization, uri) as huaweicloudsdkcore's Signer makes them."""
    headers = {"X-Sdk-Date": date, "X-Project-Id": project_id}
    if credentials.security_token:
        headers["X-Security-Token"] = credentials.security_token
    if body:
        headers["Content-Type"] = "application/json"
    request: Any = sdk_request.SdkRequest(
        method=method,
        schema="https",
        host=host,
        resource_path=path,
        query_params=list(params),
        header_params=headers,
        body=body,
    )
    signed = sdk_signer.Signer(_SdkCredentials(credentials.access_key, credentials.secret_key))
    signed.sign(request)
    return request.header_params["Authorization"], request.uri


class TestPublishedVector:
    """The shared doc's vector, computed with huaweicloudsdkcore 3.1.219."""

    def test_batch_stop_signature(self) -> None:
        url = f"https://bms.ap-southeast-1.myhuaweicloud.com/v1/{PID}/baremetalservers/action"
        signed = aksk.sign(
            AkSkCredentials(access_key=AK, secret_key=SK),
            method="POST",
            url=url,
            project_id=PID,
            body=VECTOR_BODY,
            content_type="application/json",
            now=VECTOR_DATE,
        )
        assert signed.headers["Authorization"] == (
            f"SDK-HMAC-SHA256 Access={AK}, "
            "SignedHeaders=content-type;host;x-project-id;x-sdk-date, "
            "Signature=6c411c7667871255ad78e485a6e611090031b42e79eccd6f1281dc4cf05b4edd"
        )
        assert signed.headers["X-Sdk-Date"] == "20250101T000000Z"
        assert signed.headers["Host"] == "bms.ap-southeast-1.myhuaweicloud.com"


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_word = st.sampled_from(["servers", "detail", "v2.1", "a b", "x~y", "ü", "%41", "a+b", "q=1&r"])
_segment = st.one_of(_word, _text.filter(lambda s: "/" not in s and s not in {".", ".."}))
_key = st.one_of(st.sampled_from(["tags", "limit", "marker", "not-tags", "a b", "k~"]), _text)
_value = st.one_of(st.sampled_from(["", "a,b", "x y", "~", "ü", "1+1", "&=?#"]), _text)


class TestAgainstHuaweiSdk:
    """Every generated request is signed exactly as huaweicloudsdkcore signs it."""

    @settings(max_examples=300, deadline=None)
    @given(
        method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]),
        segments=st.lists(_segment, min_size=1, max_size=5),
        trailing=st.booleans(),
        params=st.lists(st.tuples(_key, _value), max_size=6),
        repeated=st.booleans(),
        body=st.one_of(st.just(b""), st.binary(max_size=64), _text.map(str.encode)),
        token=st.one_of(st.none(), st.text(st.characters(min_codepoint=33, max_codepoint=126))),
        seconds=st.integers(min_value=0, max_value=2_000_000_000),
    )
    def test_same_authorization_and_uri(
        self,
        method: str,
        segments: list[str],
        trailing: bool,
        params: list[tuple[str, str]],
        repeated: bool,
        body: bytes,
        token: str | None,
        seconds: int,
    ) -> None:
        if repeated and params:
            params = [*params, (params[0][0], params[-1][1] + "2")]
        credentials = AkSkCredentials(access_key=AK, secret_key=SK, security_token=token or None)
        host = "ecs.example-region-1.myhuaweicloud.com"
        path = "/" + "/".join(aksk.encode(s) for s in segments) + ("/" if trailing else "")
        now = datetime.fromtimestamp(seconds, tz=UTC)
        url = aksk.wire_url(f"https://{host}{path}", params)
        ours = aksk.sign(
            credentials,
            method=method,
            url=url,
            project_id=PID,
            body=body,
            content_type="application/json" if body else None,
            now=now,
        )
        theirs, uri = sdk_authorization(
            credentials=credentials,
            method=method,
            host=host,
            path=path,
            params=params,
            body=body,
            project_id=PID,
            date=aksk.sdk_date(now),
        )
        assert ours.headers["Authorization"] == theirs
        # What goes on the wire is what the SDK sends (its process_request_uri).
        assert url == f"https://{host}{uri}"


class TestSecrets:
    """The secret key and the security token stay out of every repr."""

    def test_repr_hides_secret_and_token(self) -> None:
        credentials = AkSkCredentials(access_key=AK, secret_key=SK, security_token="TOKEN-XYZ")
        shown = repr(credentials) + str(credentials)
        assert AK in shown
        assert SK not in shown
        assert "TOKEN-XYZ" not in shown

    def test_refuses_empty_keys(self) -> None:
        with pytest.raises(ValueError, match="access key and a secret key"):
            AkSkCredentials(access_key=AK, secret_key="")


class TestCanonicalParts:
    """The canonical forms the wire depends on."""

    def test_query_is_sorted_and_percent_encoded(self) -> None:
        query = aksk.canonical_query([("tags", "a b"), ("limit", "5"), ("tags", "a,b~")])
        assert query == "limit=5&tags=a%20b&tags=a%2Cb~"

    def test_uri_gets_trailing_slash_and_keeps_tilde(self) -> None:
        assert aksk.canonical_uri("/v2.1/p/servers/a%20b~") == "/v2.1/p/servers/a%20b~/"
