"""Validation of the identifiers bulkstop puts into URLs and query strings.

Server ids end up in URL paths (``/servers/{id}/action``): a value that is not a UUID could
point a request at another resource (``../``, ``?``, ``%2F``...), so only UUIDs pass. Each
validator returns the canonical form or raises :class:`ValueError` with a short, quoted reason;
callers that know a file and line wrap it in :class:`~bulkstop.errors.InputError`.

This is the one boundary where outside data becomes an identifier:

* what a user typed (ID files, standard input): :func:`validate_server_id` (forgiving: spaces
  around it and the bare 32-digit form are fine) and :func:`validate_project_id`;
* what a machine wrote (the cloud's records, and bulkstop's own plans, journals and reports):
  :func:`record_server_id` (strict: exactly a dashed UUID, nothing trimmed) and
  :func:`record_project_id`; a cloud's job ids: :func:`validate_job_id`.
"""

from __future__ import annotations

import functools
import re
from typing import Final

#: Nova and Huawei server ids: a UUID, dashed (8-4-4-4-12) or as 32 bare hex digits.
#: Explicit ASCII classes, not re.IGNORECASE, so no Unicode case folding can slip a character in.
_HEX: Final = "[0-9a-fA-F]"
_UUID_DASHED: Final = re.compile(f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}")
_UUID_BARE: Final = re.compile(f"{_HEX}{{32}}")
#: Keystone ids are usually 32 lower-case hex digits; other deployments use other slugs.
_PROJECT_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
#: A job id we put in a URL: ASCII letters, digits and dashes.
_JOB_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
#: Nova's tag schema: 1-60 characters, none of them ',' or '/'.
MAX_TAG_LENGTH: Final = 60
_TAG_FORBIDDEN: Final = frozenset(",/")
#: Valid project ids :func:`validate_project_id` remembers.
_KNOWN_PROJECT_IDS: Final = 256
#: Longest piece of a rejected value quoted back in an error message.
_SHOWN_LENGTH: Final = 80


def shown(value: str) -> str:
    """``repr`` of *value* cut to a readable length, for error messages about bad input."""
    if len(value) > _SHOWN_LENGTH:
        return repr(value[:_SHOWN_LENGTH]) + "..."
    return repr(value)


def validate_server_id(value: str) -> str:
    """Return the canonical (lower-case, dashed) form of a server UUID.

    Surrounding whitespace is ignored and the 32-hex-digit form without dashes is accepted.
    Anything else raises :class:`ValueError`: ``not a server id (expected a UUID): 'web-01'``.
    """
    candidate = value.strip()
    if _UUID_DASHED.fullmatch(candidate):
        return candidate.lower()
    if _UUID_BARE.fullmatch(candidate):
        bare = candidate.lower()
        return f"{bare[:8]}-{bare[8:12]}-{bare[12:16]}-{bare[16:20]}-{bare[20:]}"
    raise ValueError(f"not a server id (expected a UUID): {shown(value)}")


def record_server_id(value: object) -> str:
    """The canonical (lower-case) id of a server in a machine-written record.

    Exactly a dashed UUID in any case, nothing trimmed: ``" <uuid>"`` is not ``<uuid>``, and
    ``..`` or ``x/../<uuid>`` are not server ids at all (:class:`ValueError`). Upper-case copies
    of one UUID give the same id: they are one server.
    """
    if isinstance(value, str) and _UUID_DASHED.fullmatch(value):
        return value.lower()
    raise ValueError(f"not a server id (expected a UUID): {shown(str(value))}")


def record_project_id(value: object) -> str:
    """A project id in a machine-written record: ``""`` (not given) or a valid project id."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return validate_project_id(value)
    raise ValueError(f"not a project id: {shown(str(value))}")


def validate_job_id(value: object) -> str:
    """A job id from a cloud's answer (Huawei's ``job_id``), returned unchanged so that it can go
    into ``/jobs/{job_id}``: 1-64 ASCII letters, digits and dashes, starting with a letter or
    digit (Huawei's are 32 hex digits); else :class:`ValueError`."""
    if isinstance(value, str) and _JOB_ID.fullmatch(value):
        return value
    raise ValueError(f"not a job id: {shown(str(value))}")


@functools.lru_cache(maxsize=_KNOWN_PROJECT_IDS)
def validate_project_id(value: str) -> str:
    """Return *value* unchanged if it can be a Keystone project id, else raise :class:`ValueError`.

    Accepted: 1-64 characters of ``[A-Za-z0-9_-]``, starting with a letter or digit, so the
    value is safe in a URL path as it is. Valid ids are remembered (a listing checks one id per
    record, nearly always the same one).
    """
    if _PROJECT_ID.fullmatch(value):
        return value
    raise ValueError(f"not a project id (expected 1-64 of A-Z a-z 0-9 _ -): {shown(value)}")


def validate_tag(value: str) -> str:
    """Return *value* unchanged if Nova accepts it as a tag, else raise :class:`ValueError`.

    A tag is 1-60 characters without ``,`` or ``/``. Other characters (spaces, ``?``, ``%``...)
    are legal, so callers must still URL-encode tags in query strings.
    """
    if 1 <= len(value) <= MAX_TAG_LENGTH and _TAG_FORBIDDEN.isdisjoint(value):
        return value
    raise ValueError(f"not a tag (1-{MAX_TAG_LENGTH} characters, no ',' or '/'): {shown(value)}")
