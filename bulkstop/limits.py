"""Every wait and every size bulkstop accepts, in one place.

A run against any cloud, however it misbehaves, ends in bounded time (``--deadline`` aside) and
bounded memory because each of these is enforced where it applies. The README's "Limits" section
lists them with what happens when one is hit; the modules that enforce them import them from
here (and some re-export them under the name their callers know).

Waits are in seconds, sizes in bytes.
"""

from __future__ import annotations

from typing import Final

# -- waits --------------------------------------------------------------------------------------

#: A ``Retry-After`` (on a 429, 413, APIG.0308 or a 5xx) longer than this is clamped to it, for
#: the project's hold as for the one request's wait: a gateway asking for hours is misconfigured.
MAX_RETRY_AFTER: Final = 300.0
#: Wall time (since its first throttle answer) one request may stay throttled; then the server
#: is ``failed`` with "throttled for 15 min", whatever the pacing of the throttles was.
DEFAULT_MAX_THROTTLE_WAIT: Final = 900.0
#: No single exponential-backoff wait is longer than this.
DEFAULT_BACKOFF_CAP: Final = 30.0
#: ``--request-timeout`` default: one compute request as a whole, connecting included.
DEFAULT_REQUEST_TIMEOUT: Final = 30.0
#: Seconds one Keystone exchange may take as a whole (token, catalog, discovery); the CLI sets
#: it to ``--request-timeout``. Bounded by the clock, not per read: a Keystone that drips one
#: byte a second is cut off here.
DEFAULT_AUTH_TIMEOUT: Final = 30.0
#: ``--wait-timeout`` default: how long ``--wait`` polls a server for its final status.
DEFAULT_WAIT_TIMEOUT: Final = 600.0
#: After the first Ctrl-C / SIGTERM, requests in flight get this long before they are cancelled.
DEFAULT_GRACE: Final = 10.0
#: Longest wait between two polls of a Huawei batch job (they start at ``poll_interval`` and
#: grow); otcextensions' ``wait_for_job`` polls every 5 s.
MAX_JOB_POLL_INTERVAL: Final = 10.0

# -- sizes --------------------------------------------------------------------------------------

#: Largest body of one compute answer read into memory (a listing page of 1000 full records is
#: well under 10 MiB). A larger one is not read: the request fails with ``response_too_large``,
#: and a listing that meets it ends the run with exit 3 before anything is sent.
MAX_RESPONSE_BYTES: Final = 64 * 1024 * 1024
#: The most servers one Huawei batch call may name (ECS answers Ecs.0118 above it);
#: ``batch_size`` above it is refused with exit 2.
MAX_BATCH_SIZE: Final = 1000
#: Largest ID file (or standard input) read; a larger one is refused with exit 2.
MAX_ID_FILE_BYTES: Final = 256 * 1024 * 1024
#: Pages one listing may take. With the no-progress rule (a page that brings no server not seen
#: before ends the listing as broken) this bounds a listing whose ``next`` links never end:
#: 10,000 pages is ten million servers at Nova's default page size.
MAX_LIST_PAGES: Final = 10_000
#: Only this much of an error body is decoded and scanned for a message.
MAX_SCAN_BYTES: Final = 64 * 1024
#: Longest message kept from an error body (in reports and on the terminal).
MAX_MESSAGE_CHARS: Final = 200
