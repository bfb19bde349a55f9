"""Redaction of credentials carried inside URLs, for every message, report and journal.

``http://alice:secret@keystone.example/v3`` is a valid URL, and users put such URLs in
``OS_AUTH_URL``, ``--endpoint`` or a notification URL. Whatever bulkstop prints or records goes
through :func:`redact` first, so that the userinfo part (``alice:secret``) becomes ``***``.
"""

from __future__ import annotations

import re
from typing import Final

#: What replaces the userinfo of a URL.
MASK: Final = "***"
#: ``scheme://userinfo@``: greedy up to the last ``@`` before the path, so that a password with
#: an ``@`` in it is masked whole.
_USERINFO: Final = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s]*@")


def redact(text: str) -> str:
    """``text`` with the userinfo of every URL in it replaced by :data:`MASK`.

    >>> redact("cannot reach http://bob:s3cr@t@nova.example:8774/v2.1 (refused)")
    'cannot reach http://***@nova.example:8774/v2.1 (refused)'
    """
    return _USERINFO.sub(rf"\g<scheme>{MASK}@", text)
