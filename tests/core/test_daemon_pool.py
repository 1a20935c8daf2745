"""The walker's own thread pool: futures as concurrent.futures gives them, daemon threads, no wait on interrupt."""

from __future__ import annotations

import threading
import time

import pytest

from flowyml_core.daemon_pool import DaemonThreadPool


def test_results_and_errors_come_back_through_the_futures():
    pool = DaemonThreadPool(2)
    ok, bad = pool.submit(lambda a, b: a + b, 2, 3), pool.submit(lambda: 1 / 0)
    assert ok.result(10) == 5
    with pytest.raises(ZeroDivisionError):
        bad.result(10)
    pool.shutdown(wait=True)


def test_at_most_max_workers_run_at_once_and_their_threads_are_daemons():
    pool = DaemonThreadPool(3)
    lock, running, peak, daemons = threading.Lock(), [0], [0], set()

    def work() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            daemons.add(threading.current_thread().daemon)
        time.sleep(0.05)
        with lock:
            running[0] -= 1

    futures = [pool.submit(work) for _ in range(12)]
    for future in futures:
        future.result(10)
    pool.shutdown(wait=True)
    assert peak[0] == 3 and daemons == {True}


def test_shutdown_without_waiting_cancels_what_has_not_started_and_leaves_the_rest_running():
    pool = DaemonThreadPool(1)
    began_running, release = threading.Event(), threading.Event()

    def running() -> bool:
        began_running.set()
        return release.wait(10)

    started = pool.submit(running)
    queued = pool.submit(lambda: "never")
    assert began_running.wait(10)
    began = time.monotonic()
    pool.shutdown(wait=False, cancel_futures=True)
    assert time.monotonic() - began < 1, "shutdown(wait=False) waited for the running call"
    assert queued.cancelled() and not started.done()
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(lambda: None)
    release.set()
    assert started.result(10) is True
