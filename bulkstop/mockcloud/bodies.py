"""Error bodies as the real services and gateways write them (see docs/cloud-api.md).

* Nova: one top-level key named after the fault, ``{"itemNotFound": {"code": 404, ...}}``.
* Huawei service: ``{"error": {"code": "BMS.0039", "message": ...}}``. Only BMS.0001 (bad
  request), BMS.0004 (role check), BMS.0036 (powering off) and BMS.0039 (stopped) are Huawei's
  documented codes; other statuses use the placeholder ``BMS.9999``.
* Huawei API gateway: ``{"error_code": "APIG.0308", "error_msg": ..., "request_id": ...}``.
* Keystone (and keystonemiddleware in front of Nova):
  ``{"error": {"code": 401, "title": "Unauthorized", "message": ...}}``.
* A proxy: an HTML page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from types import MappingProxyType
from typing import Any, Final

from .config import Flavour

#: Nova's fault name per status (``nova/api/openstack/wsgi.py``); others are computeFault.
NOVA_FAULT_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        400: "badRequest",
        401: "unauthorized",
        403: "forbidden",
        404: "itemNotFound",
        405: "badMethod",
        409: "conflictingRequest",
        413: "overLimit",
        415: "badMediaType",
        429: "overLimit",
        501: "notImplemented",
        503: "serviceUnavailable",
    }
)
HUAWEI_CODES: Final[Mapping[int, str]] = MappingProxyType({400: "BMS.0001", 403: "BMS.0004"})
HUAWEI_STOPPED: Final = "BMS.0039"
HUAWEI_POWERING_OFF: Final = "BMS.0036"
HUAWEI_PLACEHOLDER: Final = "BMS.9999"
APIG_THROTTLED: Final = "APIG.0308"
APIG_AUTH: Final = "APIGW.0301"
KEYSTONE_UNAUTHORIZED: Final = "The request you have made requires authentication."
NOVA_UNEXPECTED: Final = (
    "Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ and attach "
    "the Nova API log if possible.\n<class 'nova.exception.InjectedFault'>"
)


def dumps(document: Any) -> bytes:
    """Compact JSON bytes, the one serialiser of the mock."""
    return json.dumps(document, separators=(",", ":")).encode()


def nova(status: int, message: str, **extra: Any) -> dict[str, Any]:
    """A Nova fault body."""
    return {
        NOVA_FAULT_NAMES.get(status, "computeFault"): {"code": status, "message": message, **extra}
    }


def huawei(code: str, message: str) -> dict[str, Any]:
    """A Huawei service error body."""
    return {"error": {"code": code, "message": message}}


def compute_error(
    flavour: Flavour, status: int, message: str, *, huawei_code: str | None = None
) -> dict[str, Any]:
    """A compute error in the project's flavour."""
    if flavour == "huawei":
        return huawei(huawei_code or HUAWEI_CODES.get(status, HUAWEI_PLACEHOLDER), message)
    return nova(status, message)


def gateway(code: str, message: str, request_id: str) -> dict[str, str]:
    """A Huawei API gateway error body."""
    return {"error_code": code, "error_msg": message, "request_id": request_id}


def keystone(status: int, message: str) -> dict[str, Any]:
    """A Keystone error body."""
    return {"error": {"code": status, "title": HTTPStatus(status).phrase, "message": message}}


def unauthorized(flavour: Flavour, reason: str, request_id: str) -> dict[str, Any]:
    """The 401 in front of compute: keystonemiddleware's body, or the Huawei gateway's."""
    if flavour == "huawei":
        return gateway(APIG_AUTH, f"Incorrect IAM authentication information: {reason}", request_id)
    return keystone(401, KEYSTONE_UNAUTHORIZED)


def html_page(status: int) -> str:
    """The error page a proxy (nginx) answers with."""
    title = f"{status} {HTTPStatus(status).phrase}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
