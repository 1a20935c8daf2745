"""Per-step capture of what a step prints, safe when steps run in threads.

The seed swapped ``sys.stdout`` for the whole process while a step ran, so a
step in another thread wrote into the wrong step's log. Here ``sys.stdout`` and
``sys.stderr`` are wrapped once by a router that sends each write to the buffer
of the step running in *that* thread (a context variable), or through to the
real stream when no step is capturing.
"""

from __future__ import annotations

import contextvars
import io
import sys
import threading
from typing import Any, TextIO

_current: contextvars.ContextVar[io.StringIO | None] = contextvars.ContextVar("flowyml_capture", default=None)
_install_lock = threading.Lock()


class _RoutedStream:
    def __init__(self, target: TextIO) -> None:
        self._target = target

    def write(self, text: str) -> int:
        buffer = _current.get()
        if buffer is None:
            return self._target.write(text)
        return buffer.write(text)

    def flush(self) -> None:
        if _current.get() is None:
            self._target.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


def _install() -> None:
    with _install_lock:
        if not isinstance(sys.stdout, _RoutedStream):
            sys.stdout = _RoutedStream(sys.stdout)  # type: ignore[assignment]
        if not isinstance(sys.stderr, _RoutedStream):
            sys.stderr = _RoutedStream(sys.stderr)  # type: ignore[assignment]


def current_capture() -> io.StringIO | None:
    """The buffer collecting this thread's step output, or None when no step is capturing here."""
    return _current.get()


class capture_output:  # noqa: N801 - used like the function it replaced
    """Collect this thread's (and its copied context's) prints into a buffer.

    ``with capture_output() as buffer: ...``. A class rather than a
    ``@contextmanager`` generator: it is entered once per step, and the
    generator machinery cost more than the capture itself.
    """

    __slots__ = ("buffer", "_token")

    def __enter__(self) -> io.StringIO:
        if not isinstance(sys.stdout, _RoutedStream) or not isinstance(sys.stderr, _RoutedStream):
            _install()
        self.buffer = io.StringIO()
        self._token = _current.set(self.buffer)
        return self.buffer

    def __exit__(self, *exc: Any) -> None:
        _current.reset(self._token)
