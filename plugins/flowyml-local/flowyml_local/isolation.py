"""``isolation = "process"``: the step functions of each execution unit run in a fresh Python process.

Only the *call* of a step's function moves: :func:`flowyml_core.execution.run_step`
still runs here, with ``call=`` set to :meth:`UnitProcess.call`, so the
condition, the cache lookup and write, retries and their backoff,
materialization and routing are the in-process code itself, and results
(errors, retries, logs, cache keys) come out identical. A unit whose steps are
all cache hits starts no process at all.

One attempt is one request to the unit's process. What the function prints
comes back as it is printed and is written here, in the step's thread, so the
executor's per-thread capture files it in ``ExecutionResult.logs`` (or it goes
to the terminal when nothing captures). An exception comes back as its repr
and the traceback of the user's frames (:class:`~flowyml_core.errors.RemoteStepError`).
If the process dies (a segfault, ``os._exit``, the OOM killer) the attempt
fails with the signal or the exit code and faulthandler's dump; if an attempt
outlives ``step.timeout`` the process is killed, with everything it started
(it leads its own process group). Either way a later attempt or step of the
unit gets a fresh process.
"""

from __future__ import annotations

import inspect
import logging
import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from flowyml_core.errors import RemoteStepError, StepTimeoutError, StopExecution
from flowyml_core.execution import describe_error
from flowyml_core.fingerprint import code_fingerprint
from flowyml_core.pipeline import UNIT_RUNNER_ENV
from flowyml_core.step import Step

from flowyml_local import isolation_worker
from flowyml_local.isolation_worker import HEADER, dumps, dumps_by_value

logger = logging.getLogger("flowyml.local.isolation")

_WORKER = "from flowyml_local.isolation_worker import main; main()"
_WORKER_FILE = isolation_worker.__file__
#: How often a wait checks that the process is still alive (a step's own forked children can
#: keep the events pipe open after it died, so end-of-file alone is not enough).
_POLL_SECONDS = 0.25
#: Messages larger than this are read into a buffer of their size.
_LARGE = 1 << 20
#: Most of faulthandler's dump kept in an error (its last lines: the innermost frames).
_DUMP_LINES = 40
_SIGNAL_HINTS = {
    signal.SIGKILL: "the kernel's OOM killer, or kill -9",
    signal.SIGSEGV: "a crash in native code",
    signal.SIGABRT: "abort() in native code",
    signal.SIGBUS: "a crash in native code",
}


class StepProcessError(RuntimeError):
    """The process running a step died, or the step could not travel to it or back."""


def _carried(exc: BaseException, extra: str = "") -> RemoteStepError:
    """``exc`` as the step's error: its repr and message, without this module's frames."""
    return RemoteStepError(describe_error(exc) + extra, repr(exc))


def _lookup(module_name: str, qualname: str) -> Any:
    obj: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj


def function_blob(step: Step) -> bytes:
    """The step's function as the worker loads it: by reference when it can import it, else by value.

    A module-level function (or ``@step``, whose module attribute is the Step)
    goes by name, so its module is imported there and its globals are that
    module's; a function of ``__main__``, a closure or a lambda goes by value
    (cloudpickle), with the globals it uses.
    """
    func = step.func
    module_name = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if module_name and qualname and module_name != "__main__" and "<locals>" not in qualname:
        target = _lookup(module_name, qualname)
        if target is func:  # imported from disk there: with the digest of the code that was keyed here
            return pickle.dumps(("func", func, code_fingerprint(inspect.unwrap(func)), step.name), protocol=5)
        if isinstance(target, Step) and target.func is func:
            return pickle.dumps(("step", target), protocol=5)
    try:
        return dumps_by_value(("func", func))
    except Exception as exc:
        raise _carried(StepProcessError(
            f"step {step.name!r} cannot be sent to its process: {type(exc).__name__}: {exc}. Define the "
            "function at module level in an importable module, or run the step without process isolation"
        )) from None


def _arguments_blob(step: Step, values: dict[str, Any]) -> bytes:
    try:
        return dumps(values)
    except Exception as exc:
        culprit = ""
        for name, value in values.items():
            try:
                dumps(value)
            except Exception:
                culprit = f" (argument {name!r}, a {type(value).__name__})"
                break
        raise _carried(StepProcessError(
            f"the arguments of step {step.name!r} cannot be sent to its process{culprit}: "
            f"{type(exc).__name__}: {exc}. Pass picklable inputs and parameters, or run the step without "
            "process isolation"
        )) from None


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        hint = _SIGNAL_HINTS.get(number)
        return f"was killed by signal {number} ({name})" + (f": {hint}" if hint else "")
    return f"exited with code {returncode} before the step returned"


def _widen(fd: int) -> None:
    """A pipe as large as the system allows (Linux; 64 KiB otherwise): a large argument or value then
    crosses in a few hundred writes instead of thousands, each a wake-up of the other process."""
    import fcntl

    setter = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setter is None:
        return
    try:
        with open("/proc/sys/fs/pipe-max-size") as limit:
            size = int(limit.read())
        fcntl.fcntl(fd, setter, size)
    except (OSError, ValueError) as exc:  # an unprivileged limit below the maximum: keep the default
        logger.debug("cannot widen a pipe: %r", exc)


class _Died(Exception):
    pass


class _Unloadable(Exception):
    pass


def _loads(frame: bytearray) -> tuple[Any, ...]:
    try:
        return pickle.loads(frame)
    except Exception as exc:
        raise _Unloadable from exc


class UnitProcess:
    """The process of one execution unit, started at its first attempt and stopped with the unit.

    Use as a context manager around the unit; :meth:`call` is the ``call=``
    hook of :func:`~flowyml_core.execution.run_step`. ``keep_outputs``: the
    process keeps what each step returned, so that a later step of the same
    group receives that object from it instead of a copy sent back and forth
    (values travel once, as in process).
    """

    def __init__(self, registry: UnitProcesses, keep_outputs: bool = False) -> None:
        self._registry = registry
        self._generation = registry.generation
        self._keep = keep_outputs
        self._proc: subprocess.Popen[bytes] | None = None
        self._requests = self._events = self._fault = -1
        self._buffer = bytearray()
        self._frame: bytearray | None = None  # a large message being read into place
        self._filled = 0
        self._fault_text = bytearray()
        self._fault_open = False
        self._poller: Any = None
        self._seq = 0
        self._functions: dict[int, tuple[Step, bytes]] = {}
        self._held: dict[int, tuple[Any, tuple[int, Any]]] = {}  # id(value) -> (value, (seq, item))

    def __enter__(self) -> UnitProcess:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:  # interrupted (Ctrl-C) while the process may be mid-step: no goodbyes
            self._kill()

    # -- one attempt --------------------------------------------------------------------
    def call(self, step: Step, kwargs: dict[str, Any]) -> Any:
        """Call ``step.func(**kwargs)`` in the unit's process; the value, or the step's error raised."""
        refs: dict[str, tuple[int, Any]] = {}
        values: dict[str, Any] = {}
        for name, value in kwargs.items():
            held = self._held.get(id(value))
            if held is not None and held[0] is value and self._proc is not None:
                refs[name] = held[1]
            else:
                values[name] = value
        cached = self._functions.get(id(step))
        if cached is None or cached[0] is not step:
            cached = self._functions[id(step)] = (step, function_blob(step))
        arguments = _arguments_blob(step, values)
        self._start()
        self._seq += 1
        seq = self._seq
        try:
            self._send(pickle.dumps(("call", seq, step.timeout is not None, self._keep, refs), protocol=5))
            self._send(cached[1])
            self._send(arguments)
        except OSError:  # the process is gone; _receive says how
            pass
        deadline: float | None = None
        try:
            while True:
                message = self._receive(deadline)
                kind = message[0]
                if kind == "out":
                    (sys.stdout if message[1] == 1 else sys.stderr).write(message[2])
                elif kind == "log":
                    _emit(message[1])
                elif kind == "start":
                    deadline = time.monotonic() + step.timeout  # type: ignore[operator]
                elif kind == "ok":
                    value = message[2]
                    if self._keep:
                        self._hold(seq, value)
                    return value
                elif kind == "raise":
                    if message[2] == "stop":
                        raise StopExecution(message[3])
                    raise RemoteStepError(message[4], message[3])
                elif kind == "fail":
                    raise _carried(StepProcessError(f"step {step.name!r} {message[2]}"))
        except _Unloadable as problem:
            # The process is fine, but what it sent cannot be loaded here (a class this one cannot import).
            exc = problem.__cause__
            raise _carried(StepProcessError(
                f"step {step.name!r}: what its process sent back cannot be loaded here: {type(exc).__name__}: {exc}"
            )) from None
        except TimeoutError:
            self._kill()
            # The in-process executor's words (flowyml_core.execution._call_with_timeout).
            raise _carried(StepTimeoutError(f"step {step.name!r} timed out after {step.timeout:g}s")) from None
        except _Died:
            returncode, dump = self._reap()
            what = _describe_exit(returncode)
            error = StepProcessError(f"step {step.name!r}: its process {what}")
            raise _carried(error, dump) from None

    def _hold(self, seq: int, value: Any) -> None:
        """Remember which objects came from the process (the value, and the items a group fans out)."""
        self._held[id(value)] = (value, (seq, None))
        if isinstance(value, (tuple, list)):
            for index, item in enumerate(value):
                self._held.setdefault(id(item), (item, (seq, index)))
        elif isinstance(value, dict):
            for key, item in value.items():
                self._held.setdefault(id(item), (item, (seq, key)))

    # -- the process --------------------------------------------------------------------
    def _start(self) -> None:
        if self._proc is not None:
            return
        if self._generation <= self._registry.stopped:
            raise _carried(StepProcessError("the run was interrupted: no new step process is started"))
        requests_r, requests_w = os.pipe()
        events_r, events_w = os.pipe()
        fault_r, fault_w = os.pipe()
        _widen(requests_w)
        _widen(events_w)
        env = dict(os.environ)
        env[UNIT_RUNNER_ENV] = "1"  # the child only: a pipeline module imported there must not run itself
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER, str(requests_r), str(events_w), str(fault_w)],
                pass_fds=(requests_r, events_w, fault_w), stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,  # its own process group: a kill takes what it started too
            )
        except OSError as exc:
            for fd in (requests_r, requests_w, events_r, events_w, fault_r, fault_w):
                os.close(fd)
            raise _carried(StepProcessError(f"could not start a step process ({sys.executable}): {exc}")) from None
        for fd in (requests_r, events_w, fault_w):
            os.close(fd)
        os.set_blocking(fault_r, False)
        self._proc, self._requests, self._events, self._fault = proc, requests_w, events_r, fault_r
        self._buffer.clear()
        self._frame = None
        self._fault_text.clear()
        self._held.clear()
        self._poller = select.poll()
        self._poller.register(events_r, select.POLLIN)
        self._poller.register(fault_r, select.POLLIN)
        self._fault_open = True
        self._registry.add(self)
        root = logging.getLogger()
        self._send(pickle.dumps({"sys_path": list(sys.path), "log_level": root.getEffectiveLevel()}, protocol=5))

    def _send(self, data: bytes) -> None:
        view = memoryview(HEADER.pack(len(data)))
        for part in (view, memoryview(data)):
            while part:
                part = part[os.write(self._requests, part):]

    def _receive(self, deadline: float | None) -> tuple[Any, ...]:
        """The next event; TimeoutError past ``deadline``; _Died when the process is gone."""
        while True:
            message = self._take()
            if message is not None:
                return message
            wait = _POLL_SECONDS if deadline is None else min(_POLL_SECONDS, deadline - time.monotonic())
            ready = self._poller.poll(wait * 1000) if wait > 0 else []
            for fd, _ in ready:
                if fd == self._fault:
                    self._read_fault()
                else:
                    self._fill()
            if not ready:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError
                if self._exited():
                    raise _Died

    def _take(self) -> tuple[Any, ...] | None:
        """A whole message from what was read, if there is one."""
        if self._frame is not None:
            if self._filled < len(self._frame):
                return None
            frame, self._frame = self._frame, None
            return _loads(frame)
        if len(self._buffer) < HEADER.size:
            return None
        size = HEADER.unpack_from(self._buffer)[0]
        end = HEADER.size + size
        if len(self._buffer) >= end:
            frame = self._buffer[HEADER.size:end]
            del self._buffer[:end]
            return _loads(frame)
        if size > _LARGE:  # the rest is read straight into its place: no growing buffer, no copies
            self._frame = bytearray(size)
            self._filled = len(self._buffer) - HEADER.size
            self._frame[:self._filled] = memoryview(self._buffer)[HEADER.size:]
            self._buffer.clear()
        return None

    def _fill(self) -> None:
        if self._frame is not None:
            got = os.readv(self._events, [memoryview(self._frame)[self._filled:]])
            self._filled += got
        else:
            chunk = os.read(self._events, 1 << 20)
            got = len(chunk)
            self._buffer += chunk
        if not got:
            raise _Died

    def _read_fault(self) -> None:
        while self._fault_open:
            try:
                chunk = os.read(self._fault, 65536)
            except BlockingIOError:
                return
            if not chunk:  # closed: stop polling it (a closed pipe is always "ready")
                self._poller.unregister(self._fault)
                self._fault_open = False
                return
            self._fault_text += chunk[-65536:]
            del self._fault_text[:-65536]

    def _exited(self) -> bool:
        """Whether the process has ended, without reaping it (its pid must stay ours until the group is killed)."""
        assert self._proc is not None
        if not hasattr(os, "waitid"):  # macOS: reaps it (its pid could then be reused before the kill)
            return self._proc.poll() is not None
        try:
            return os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def _kill(self) -> None:
        """SIGKILL the process and every process it started (its group); then reap it."""
        proc = self._proc
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):  # the whole group has already exited
            pass
        self._registry.discard(self)  # before reaping: while registered, its pid is surely still ours
        proc.wait()
        self._forget()

    def _reap(self) -> tuple[int, str]:
        """After the process died: its return code and faulthandler's dump (last lines)."""
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + 5
        while not self._exited() and time.monotonic() < deadline:  # end-of-file comes just before the exit
            time.sleep(0.005)
        self._read_fault()
        self._kill()
        assert proc.returncode is not None
        text = self._fault_text.decode("utf-8", "replace").strip()
        # The worker's own frames (its loop, python -c) are the same for every step.
        lines = [line for line in text.splitlines() if _WORKER_FILE not in line and '"<string>"' not in line]
        lines = lines[-_DUMP_LINES:]
        return proc.returncode, ("\n" + "\n".join(lines) + "\n") if lines else ""

    def _forget(self) -> None:
        for fd in (self._requests, self._events, self._fault):
            if fd >= 0:
                os.close(fd)
        self._requests = self._events = self._fault = -1
        self._proc = None
        self._held.clear()

    def close(self) -> None:
        """End the process: let it send what it still has to say, then stop its group."""
        if self._proc is None:
            return
        try:
            self._send(pickle.dumps(("exit",), protocol=5))
            deadline = time.monotonic() + 2
            while True:
                message = self._receive(deadline)
                if message[0] == "out":  # printed after its step returned (a thread it left running)
                    (sys.stdout if message[1] == 1 else sys.stderr).write(message[2])
                elif message[0] == "log":
                    _emit(message[1])
        except (OSError, TimeoutError, _Died):
            pass
        self._kill()


def _emit(data: dict[str, Any]) -> None:
    """Hand a log record of the step's process to this process's logging, as if logged here."""
    record = logging.makeLogRecord(data)
    target = logging.getLogger(record.name)
    if target.isEnabledFor(record.levelno):
        target.handle(record)


class UnitProcesses:
    """The live unit processes of one executor, so that an interrupted run can stop them all."""

    def __init__(self) -> None:
        self._live: set[UnitProcess] = set()
        self._lock = threading.Lock()
        self.generation = 1  # units made from now on may start processes ...
        self.stopped = 0  # ... unless made at or before this generation (an interrupted run's)
        self.started = 0  # processes started so far (a fully cached run starts none)

    def unit(self, keep_outputs: bool = False) -> UnitProcess:
        return UnitProcess(self, keep_outputs)

    def add(self, unit: UnitProcess) -> None:
        with self._lock:
            self._live.add(unit)
            self.started += 1

    def discard(self, unit: UnitProcess) -> None:
        with self._lock:
            self._live.discard(unit)

    def stop_all(self) -> None:
        """Kill every live unit process (with what it started); the units made so far start no new one."""
        with self._lock:
            self.stopped = self.generation
            self.generation += 1
            for unit in self._live:
                proc = unit._proc
                if proc is not None:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
