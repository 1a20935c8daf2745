"""Retries around each request to a store: which errors are worth retrying, and the budget.

A :class:`RetryPolicy` bounds a request by attempts and by a deadline (time
for the whole request, waits included); out of budget it raises
:class:`StoreUnavailableError`, one line that says where, how long, how many
attempts, the last error and which option to change. Used by
:class:`flowyml_local.backends.FsspecBackend` for object stores (the GCS
stores set the budget from their ``retries`` and ``deadline`` options).
"""

from __future__ import annotations

import errno
import logging
import random
import time
from typing import Callable, TypeVar

import attrs

from flowyml_core.errors import FlowymlError, IntegrityError

logger = logging.getLogger("flowyml.stores")

T = TypeVar("T")

_TRANSIENT_ERRNOS = {errno.ECONNRESET, errno.ECONNABORTED, errno.ECONNREFUSED, errno.EPIPE, errno.ETIMEDOUT, errno.EAGAIN}
_TRANSIENT_CODES = {408, 429, 500, 502, 503, 504}


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same request may succeed (timeouts, drops, 5xx, 429)."""
    if isinstance(exc, (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
                        NotADirectoryError, IntegrityError)):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if any(c.__module__ == "botocore.exceptions" and c.__name__ in ("HTTPClientError", "ConnectionError")
           for c in type(exc).__mro__):
        return True  # botocore's own classes for refused and dropped connections and timeouts
    code = getattr(exc, "code", None) or getattr(exc, "status", None) or _http_status(exc)
    try:
        if code is not None and int(code) in _TRANSIENT_CODES:
            return True
        if code is not None and int(code) == 401 and "Invalid Credentials" in str(exc):
            return True  # an access token that expired in flight: the next attempt refreshes it
    except (TypeError, ValueError):
        pass
    module = type(exc).__module__ or ""
    if module.startswith(("aiohttp", "requests", "urllib3")):
        return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    return False


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status of a botocore ``ClientError``, or of the one s3fs turned into an ``OSError``."""
    for error in (exc, exc.__cause__):
        response = getattr(error, "response", None)
        if isinstance(response, dict):
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status is not None:
                return status
    return None


class StoreUnavailableError(FlowymlError, OSError):
    """A store kept failing transiently (drops, timeouts, 5xx) until its retry budget was spent.

    An ``OSError`` as well, so that code which treats an unreadable store as
    I/O trouble (a cache read becomes a miss with a warning) keeps doing so.
    The last transient error is its ``__cause__``.
    """


@attrs.define(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter, around each request to a store.

    Two bounds, whichever is reached first: ``attempts`` tries in all (None: no
    count limit) and ``deadline`` seconds for the whole call, attempts and waits
    included (None: no time limit). A deadline is what makes an outage fail in
    a known time: no new attempt starts when its backoff would end past the
    deadline, and a backend that can (fsspec's async filesystems, see
    :meth:`FsspecBackend._call`) abandons the attempt in flight when the time is
    spent. Non-transient errors (missing objects, no access) are raised at once.
    """

    attempts: int | None = 5
    base_delay: float = 0.2
    max_delay: float = 5.0
    deadline: float | None = None
    #: Whose options set these bounds, for the final error, e.g. "the gcs artifact store";
    #: empty when the bounds are not configurable (the message then names none).
    owner: str = ""

    def __attrs_post_init__(self) -> None:
        if self.attempts is None and self.deadline is None:
            raise ValueError("RetryPolicy needs attempts or a deadline: without either it would retry forever")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"RetryPolicy attempts must be >= 1, not {self.attempts!r}")
        if self.deadline is not None and self.deadline <= 0:
            raise ValueError(f"RetryPolicy deadline must be > 0 seconds, not {self.deadline!r}")

    def run(self, what: str, attempt: Callable[[float | None], T], where: str = "") -> T:
        """``attempt(remaining)`` until it succeeds, fails for good, or the budget is spent.

        ``remaining`` is the time left before the deadline (None without one);
        the attempt should not wait longer than that. ``what`` names the
        operation ("write") and ``where`` its target (a URI) in the messages.
        Out of budget, raises :class:`StoreUnavailableError` (the last error
        as its cause): one line with the target, the time, the attempts, the
        last error and the option to change.
        """
        started = time.monotonic()
        label = f"{what} {where}".strip()
        tries = 0
        while True:
            tries += 1
            remaining = None if self.deadline is None else max(self.deadline - (time.monotonic() - started), 1e-3)
            try:
                return attempt(remaining)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                elapsed = time.monotonic() - started
                delay = min(self.max_delay, self.base_delay * (2 ** (tries - 1))) * (0.5 + random.random() / 2)
                out_of_tries = self.attempts is not None and tries >= self.attempts
                out_of_time = self.deadline is not None and elapsed + delay >= self.deadline
                if out_of_tries or out_of_time:
                    raise StoreUnavailableError(self._gave_up(what, where, exc, tries, elapsed, out_of_time)) from exc
                # Blips are routine on object stores: one warning per request, once it persists
                # (an outage would otherwise print a line per attempt); each retry at INFO.
                logger.log(logging.WARNING if tries == 3 else logging.INFO,
                           "%s failed (%s); retry %d in %.2fs%s", label, error_line(exc), tries, delay,
                           "" if self.deadline is None else f" ({self.deadline - elapsed:.1f}s of {self.deadline:g}s left)")
                time.sleep(delay)

    def _gave_up(self, what: str, where: str, exc: BaseException, tries: int, elapsed: float,
                 out_of_time: bool) -> str:
        """The one-line message of :class:`StoreUnavailableError`."""
        target = f"the store at {where}" if where else "the store"
        attempts = f"{tries} attempt{'s' if tries != 1 else ''}"
        if out_of_time:
            head = (f"{target} did not answer a {what} within {self.deadline:g} s "
                    f"(gave up after {attempts} in {elapsed:.1f} s; last error: {error_line(exc)})")
            fix = (f"; if it is only slow or the transfer is large, raise the deadline option of {self.owner} "
                   f"(now {self.deadline:g} s)" if self.owner else "")
        else:
            head = (f"{target} did not answer a {what} after {attempts} in {elapsed:.1f} s "
                    f"(last error: {error_line(exc)})")
            fix = (f"; to keep trying longer, raise the retries option of {self.owner} (now {tries - 1})"
                   if self.owner else "")
        return f"{head}; check that the service is up and reachable{fix}"


def error_line(exc: BaseException) -> str:
    """``Type: first line`` of an error, for one-line messages (a timeout of ours says what it was)."""
    text = str(exc).strip()
    if not text and isinstance(exc, TimeoutError):
        return f"{type(exc).__name__}: no answer before the deadline"
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
