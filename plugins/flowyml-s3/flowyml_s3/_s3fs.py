"""s3fs with its own retry layers turned off, so that the store's ``deadline`` holds.

Imported only when an S3 store first builds its filesystem (it imports s3fs,
aiobotocore and botocore).

Why: a request through s3fs is retried by two layers before the store sees
it fail: s3fs's ``_error_wrapper`` (``S3FileSystem.retries`` = 5 tries, for
connection errors, timeouts and throttling) and botocore's retry handler
(up to 5 attempts in its "legacy" mode, for 5xx, throttling and connection
errors). Under flowyml's own retries they multiply (25 requests per store
attempt) and an outage takes minutes to fail. Here each is set to one try:
one attempt of the store's :class:`~flowyml_local.retries.RetryPolicy` is one
HTTP request, and that policy (``retries``, ``retry_delay``,
``retry_max_delay``, ``deadline``) is the only retry layer.

The class lives at module level so that a pickled filesystem (fsspec pickles
the class and its options) can be rebuilt in another process.
"""

from __future__ import annotations

import s3fs

#: botocore's retry settings for one attempt per request (``total_max_attempts`` counts the first).
SINGLE_ATTEMPT_RETRIES = {"mode": "standard", "total_max_attempts": 1}


class SingleAttemptS3FileSystem(s3fs.S3FileSystem):
    """An ``s3fs.S3FileSystem`` whose requests are tried once by s3fs: the store's policy retries them.

    botocore's own retries are turned off through ``config_kwargs`` (see
    :func:`flowyml_s3.stores.make_filesystem`).
    """

    retries = 1
