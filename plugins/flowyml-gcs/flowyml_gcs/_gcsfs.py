"""gcsfs with its own retry layer turned off, so that the store's ``deadline`` holds.

Imported only when a GCS store first builds its filesystem (it imports gcsfs).

Why: gcsfs retries every HTTP request up to 6 times with 1-16 s of backoff
(``gcsfs.retry.retry_request``, fixed when its class is defined, not an
option). Under flowyml's own retries that multiplied: in a sustained outage a
run took minutes to fail, and an error could not say how many attempts were
made. With this class one attempt of the store's
:class:`~flowyml_local.retries.RetryPolicy` is one HTTP request, and that
policy (``retries``, ``retry_delay``, ``retry_max_delay``, ``deadline``) is
the only retry layer.

The class lives at module level so that a pickled filesystem (fsspec pickles
the class and its options) can be rebuilt in another process.
"""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any

# gcsfs >= 2025 first tries gRPC calls for "hierarchical namespace" buckets
# unless this is "false" when it is imported; against emulators and private
# endpoints each such call waits ~60 s. An explicit choice is kept.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import gcsfs  # noqa: E402  (the variable above must be set first)

logger = logging.getLogger("flowyml.stores.gcs")

_BASE: type = gcsfs.GCSFileSystem
#: ``_request`` without gcsfs's ``@retry_request`` (the ``decorator`` package keeps it as ``__wrapped__``).
_SINGLE_REQUEST = getattr(_BASE._request, "__wrapped__", None)
#: Whether gcsfs's retries could be turned off with this gcsfs version.
SINGLE_ATTEMPT = inspect.iscoroutinefunction(_SINGLE_REQUEST)


class SingleAttemptGCSFileSystem(_BASE):  # type: ignore[misc, valid-type]
    """A ``gcsfs.GCSFileSystem`` whose requests are tried once: the store's policy retries them."""

    if SINGLE_ATTEMPT:

        async def _request(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            try:
                return await _SINGLE_REQUEST(self, method, path, *args, **kwargs)
            except gcsfs.retry.HttpError as exc:
                # gcsfs's retry layer turns this one into an actionable error; keep that.
                if exc.code == 400 and "requester pays" in str(exc.message):
                    raise ValueError("Bucket is requester pays. Set `requester_pays=True` when creating "
                                     "the GCSFileSystem.") from exc
                raise


if not SINGLE_ATTEMPT:  # pragma: no cover - depends on the installed gcsfs
    logger.debug("gcsfs %s: its request retries cannot be turned off; they run inside the store's deadline",
                 getattr(gcsfs, "__version__", "?"))
