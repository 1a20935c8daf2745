"""The thread pool of a concurrent local walk (``max_workers > 1``): daemon threads, so Ctrl-C ends the process.

``concurrent.futures.ThreadPoolExecutor`` joins its threads when the
interpreter exits, so an interrupted run waited for every step still running
(a 30-minute training step kept ``flowyml run`` alive for 30 minutes after
Ctrl-C). A step in a thread cannot be stopped, but it need not be waited for:
stores write atomically (a temporary file, then a rename), so a step cut off
at exit leaves no torn entry, only a temporary file that ``flowyml cache
prune`` removes. Threads are started as work arrives, up to ``max_workers``.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from typing import Any, Callable

_STOP = None


class DaemonThreadPool:
    """The ``submit``/``shutdown`` subset of :class:`concurrent.futures.Executor` that the walker uses."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "flowyml-unit") -> None:
        self._max_workers = max_workers
        self._prefix = thread_name_prefix
        self._work: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._shut = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot submit to a pool that was shut down")
            self._work.put((future, fn, args))
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self._max_workers:
                thread = threading.Thread(target=self._serve, name=f"{self._prefix}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        return future

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is _STOP:
                return
            future, fn, args = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # handed to the walker, which fails the unit's steps
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the threads once their work is done; ``wait=False`` returns at once (running steps are left)."""
        with self._lock:
            self._shut = True
            if cancel_futures:
                while True:
                    try:
                        item = self._work.get_nowait()
                    except queue.Empty:
                        break
                    if item is not _STOP:
                        item[0].cancel()
            for _ in self._threads:
                self._work.put(_STOP)
        if wait:
            for thread in self._threads:
                thread.join()
