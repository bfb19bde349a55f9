"""Redaction of credentials carried inside URLs, for every message, report and journal.

``http://alice:secret@keystone.example/v3`` is a valid URL, and users put such URLs in
``OS_AUTH_URL``, ``--endpoint`` or a notification URL. Whatever bulkstop prints or records goes
through :func:`redact` first, so that the userinfo part (``alice:secret``) becomes ``***``.

A URL that is a secret as a whole (an incoming webhook's ``/services/T000/B000/XXXX``, a
Pushgateway's) is shown by :func:`redact_url` as its scheme and host only.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

#: What replaces the userinfo of a URL.
MASK: Final = "***"
#: What replaces the path and query of a URL whose secret is its path (a webhook's).
REDACTED: Final = "/***"
#: ``scheme://userinfo@``: greedy up to the last ``@`` before the path, so that a password with
#: an ``@`` in it is masked whole.
_USERINFO: Final = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s]*@")


def redact(text: str) -> str:
    """``text`` with the userinfo of every URL in it replaced by :data:`MASK`.

    >>> redact("cannot reach http://bob:s3cr@t@nova.example:8774/v2.1 (refused)")
    'cannot reach http://***@nova.example:8774/v2.1 (refused)'
    """
    return _USERINFO.sub(rf"\g<scheme>{MASK}@", text)


def redact_url(url: str) -> str:
    """``scheme://host[:port]`` with any credentials, path and query replaced by ``/***``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return REDACTED
    if ":" in host:
        host = f"[{host}]"
    secret = parts.path.strip("/") or parts.query or parts.fragment or parts.username
    return f"{parts.scheme}://{host}{port}{REDACTED if secret else ''}"
