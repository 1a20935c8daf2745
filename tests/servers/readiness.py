"""Waiting for a test server that was just spawned to answer.

One loop for every HTTP server the suite starts (fake-gcs-server, the docker
registry): it stops as soon as the server answers 200, the process exits (its
output then says why), or the deadline passes, and says which.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from typing import Callable


def wait_for_http_ok(url: str, proc: subprocess.Popen, deadline: float, output: Callable[[], str]) -> tuple[bool, str]:
    """Poll ``url`` until it answers 200 or ``deadline`` (``time.monotonic()``) passes: (ready, why not)."""
    started = time.monotonic()
    delay = 0.01
    last = "no answer"
    while time.monotonic() < deadline:
        rc = proc.poll()
        if rc is not None:
            return False, f"exited with code {rc}: {output()[-2000:]}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return True, ""
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    waited = time.monotonic() - started
    return False, f"no answer from {url} within {waited:.1f}s (last: {last}); output: {output()[-2000:]}"
