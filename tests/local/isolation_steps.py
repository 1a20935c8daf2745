"""Step functions for tests/local/test_isolation.py.

A module of their own, importable without pytest: with ``isolation = "process"``
each unit's process imports the module of its steps.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from flowyml_core.testing.samples import CallLog


def segfault(calls: CallLog) -> int:
    calls.record("segfault")
    return len(ctypes.string_at(0))  # reads address 0: SIGSEGV


def exit_three(calls: CallLog) -> int:
    calls.record("exit_three")
    os._exit(3)


def exit_by_sys(calls: CallLog) -> int:
    calls.record("exit_by_sys")
    sys.exit(2)


def kill_self(calls: CallLog) -> int:
    calls.record("kill_self")
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)
    return 0


def hang(calls: CallLog, seconds: float = 60.0) -> int:
    """Starts a child process of its own, records both pids, then sleeps past any test's timeout."""
    child = subprocess.Popen(["sleep", "120"])
    calls.record("hang", child=child.pid)
    print("hanging now", flush=True)
    time.sleep(seconds)
    return os.getpid()


def hang_then_succeed(calls: CallLog, marker: str) -> str:
    """Hangs on its first attempt (no marker yet), returns on the next."""
    calls.record("hang_then_succeed")
    if not os.path.exists(marker):
        Path(marker).write_text("first attempt ran")
        print("attempt 1 hangs", flush=True)
        time.sleep(60)
    print("attempt 2 returns")
    return "second"


def chatty(calls: CallLog) -> int:
    calls.record("chatty")
    print("to stdout")
    print("to stderr", file=sys.stderr)
    logging.getLogger("isolation-test").warning("a warning from the step")
    print("more stdout")
    return 7


def nested_failure(calls: CallLog) -> int:
    calls.record("nested_failure")
    return _inner({"present": 1})


def _inner(table: dict[str, int]) -> int:
    return table["missing"]


def pid(calls: CallLog, x: int = 0) -> int:
    calls.record("pid", x=x)
    return os.getpid()


def returns_lock(calls: CallLog) -> threading.Lock:
    calls.record("returns_lock")
    return threading.Lock()


def takes_anything(calls: CallLog, thing: object) -> str:
    calls.record("takes_anything")
    return type(thing).__name__


def make_table(calls: CallLog) -> dict[str, list[int]]:
    table = {"rows": list(range(5))}
    calls.record("make_table", object=id(table))
    return table


def row_count(table: dict[str, list[int]], calls: CallLog) -> int:
    calls.record("row_count", object=id(table))
    return len(table["rows"])


def wait_for(calls: CallLog, name: str, seconds: float = 30.0) -> int:
    """Returns once step ``name`` has recorded a call (so that it is surely running)."""
    deadline = time.monotonic() + seconds
    while calls.count(name) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    calls.record("wait_for")
    return calls.count(name)


def make_tables(calls: CallLog) -> dict[str, object]:
    """Two outputs from a dict: the group fans out its ``table`` item."""
    table = {"rows": list(range(5))}
    calls.record("make_table", object=id(table))
    return {"table": table, "unused": None}


def _refuse_to_load() -> None:
    raise RuntimeError("this object cannot be rebuilt here")


class Unloadable:
    """Pickles fine, fails when unpickled (as an object of a library the caller lacks would)."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_refuse_to_load, ())


def returns_unloadable(calls: CallLog) -> Unloadable:
    calls.record("returns_unloadable")
    return Unloadable()


def forks(calls: CallLog) -> str:
    """Forks a child that prints and logs (as a multiprocessing pool with fork does), then waits for it."""
    calls.record("forks")
    child = os.fork()
    if child == 0:
        print("from the forked child", flush=True)
        logging.getLogger("isolation-test").warning("a warning from the forked child")
        os._exit(0)
    _, status = os.waitpid(child, 0)
    print("the child exited with", os.waitstatus_to_exitcode(status))
    return "forked"
