"""The process that calls step functions for ``isolation = "process"``: one per execution unit.

:mod:`flowyml_local.isolation` starts it as ``python -c ...`` with three pipe
descriptors (requests in, events out, and a pipe for :mod:`faulthandler`'s
dump after a fatal signal) and the environment variable that marks a unit
runner, so that a pipeline module imported here cannot start a run of its own.

It imports nothing of flowyml (``flowyml_core.execution`` only to describe a
step's exception): a step's module brings what it uses. Its cost is Python's
start-up, ``logging`` (records go to the parent's handlers), the step's own
imports and the pickles, which is what ``bench/bench_isolation.py`` compares
with a bare ``multiprocessing`` spawn. Everything else a step needs (condition, cache, materialization,
retries, the timeout) stays in the parent, in
:func:`flowyml_core.execution.run_step`; here, one request is one attempt.

Messages are pickles framed by an 8-byte length. Requests: an ``init`` dict
(``sys.path``, log level), then per attempt ``("call", seq, timed, keep,
refs)`` followed by two frames, the function (``("func", f)`` or ``("step",
step)``) and its keyword arguments (``refs`` names those that are outputs this
process returned earlier and kept: they do not travel twice), and at the end
``("exit",)``. Events: ``("out", stream, text)``, ``("log",
record)``, ``("start", seq)``, ``("ok", seq, value)``, ``("raise", seq, kind,
repr, description)`` and ``("fail", seq, reason)`` (the function or its value
could not travel).
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import threading
import types
from typing import Any

HEADER = struct.Struct("<Q")
#: Printed output is sent in batches: when this much is pending, or every FLUSH_INTERVAL seconds.
FLUSH_BYTES = 64 * 1024
FLUSH_INTERVAL = 0.05


class _NeedsValue(Exception):
    pass


class _ByReference(pickle.Pickler):
    """Plain pickle, which gives up on a class or function of ``__main__``: it would name it by
    reference, and the other process cannot resolve it (its ``__main__`` is not the script).
    (Not called for plain bytes, str, numbers, lists, dicts...: large data costs nothing more.)"""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (type, types.FunctionType)) and obj.__module__ == "__main__":
            raise _NeedsValue
        return NotImplemented


def dumps(obj: Any) -> bytes:
    """Pickle ``obj``; what plain pickle cannot name (lambdas, classes of ``__main__``) goes by value."""
    buffer = io.BytesIO()
    try:
        _ByReference(buffer, protocol=5).dump(obj)
        return buffer.getvalue()
    except (_NeedsValue, pickle.PicklingError, TypeError, AttributeError):
        return dumps_by_value(obj)


_BY_VALUE: Any = None


def dumps_by_value(obj: Any) -> bytes:
    """cloudpickle, but code keeps its file name: a traceback through a function sent by value
    then shows the same file and lines as in the process that defined it (cloudpickle alone
    renames every file ``<dynamic-code>``)."""
    global _BY_VALUE
    if _BY_VALUE is None:
        import collections
        import marshal

        import cloudpickle

        def reduce_code(code: types.CodeType) -> tuple[Any, tuple[bytes]]:
            return marshal.loads, (marshal.dumps(code),)  # same interpreter on both sides

        class ByValue(cloudpickle.Pickler):
            dispatch_table = collections.ChainMap({types.CodeType: reduce_code}, cloudpickle.Pickler.dispatch_table)

        _BY_VALUE = ByValue
    buffer = io.BytesIO()
    _BY_VALUE(buffer, protocol=5).dump(obj)
    return buffer.getvalue()


class Channel:
    """The events pipe: whole messages, one writer at a time, printed text batched."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()
        self.pending: list[tuple[int, str]] = []
        self.pending_size = 0

    def send(self, message: tuple[Any, ...]) -> None:
        """Send ``message`` after any printed text still pending (so output comes before the result)."""
        data = dumps(message)
        with self.lock:
            self._flush_locked()
            self._write(data)

    def send_bytes(self, data: bytes) -> None:
        with self.lock:
            self._flush_locked()
            self._write(data)

    def out(self, stream: int, text: str) -> None:
        with self.lock:
            self.pending.append((stream, text))
            self.pending_size += len(text)
            if self.pending_size >= FLUSH_BYTES:
                self._flush_locked()

    def flush(self) -> None:
        with self.lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self.pending:
            return
        batches: list[tuple[int, list[str]]] = []
        for stream, text in self.pending:
            if batches and batches[-1][0] == stream:
                batches[-1][1].append(text)
            else:
                batches.append((stream, [text]))
        self.pending = []
        self.pending_size = 0
        for stream, texts in batches:
            self._write(pickle.dumps(("out", stream, "".join(texts)), protocol=5))

    def _write(self, data: bytes) -> None:
        view = memoryview(HEADER.pack(len(data)) + data) if len(data) < 65536 else None
        if view is None:  # large: header and payload written without joining them in memory
            self._write_all(memoryview(HEADER.pack(len(data))))
            self._write_all(memoryview(data))
        else:
            self._write_all(view)

    def _write_all(self, view: memoryview) -> None:
        while view:
            written = os.write(self.fd, view)
            view = view[written:]


class Forward(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of the worker: text goes to the parent, which puts it where
    the step's output goes in process (its captured logs, or the terminal)."""

    def __init__(self, channel: Channel, stream: int, original: Any) -> None:
        self._channel = channel
        self._stream = stream
        self._original = original

    def write(self, text: str) -> int:
        if text:
            self._channel.out(self._stream, text)
        return len(text)

    def flush(self) -> None:
        self._channel.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:  # what native code writes to fd 1/2 goes to the terminal, as in process
        return self._original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._original, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._original, "errors", None)


def _watch(channel: Channel, parent: int) -> None:
    """Send pending output regularly; if the parent is gone, stop this process and what it started."""
    import signal
    import time

    while True:
        time.sleep(FLUSH_INTERVAL)
        channel.flush()
        if os.getppid() != parent:
            os.killpg(0, signal.SIGKILL)


def _read_exactly(fd: int, size: int) -> bytearray | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            return None
        got += n
    return buffer


def _read(fd: int) -> bytearray | None:
    header = _read_exactly(fd, HEADER.size)
    if header is None:
        return None
    return _read_exactly(fd, HEADER.unpack(header)[0])


def _forward_logging(channel: Channel, level: int) -> None:
    """Log records of the steps go to the parent's handlers (its configuration, its level)."""
    import logging

    class ForwardHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                data = {k: v for k, v in record.__dict__.items() if isinstance(v, (str, int, float, type(None)))}
                data["msg"] = record.getMessage()
                data["args"] = None
                if record.exc_info and not record.exc_text:
                    data["exc_text"] = logging.Formatter().formatException(record.exc_info)
                channel.send(("log", data))
            except Exception:  # never let logging break the step (logging's own convention)
                self.handleError(record)

    root = logging.getLogger()
    root.handlers[:] = [ForwardHandler()]
    root.setLevel(level)


def _describe(exc: BaseException) -> str:
    from flowyml_core.execution import describe_error

    return describe_error(exc, hide=(__file__,))


def _call(channel: Channel, request: tuple[Any, ...], func_blob: bytes, kwargs_blob: bytes, held: dict[int, Any]) -> None:
    _, seq, timed, keep, refs = request
    try:
        kind, target, *keyed = pickle.loads(func_blob)  # a step by reference checks its own code as it loads
        func = target.func if kind == "step" else target
        if keyed:  # a function by reference: the code the parent keyed, or the file changed since
            from flowyml_core.step import check_code_unchanged

            check_code_unchanged(func, *keyed)
        kwargs = pickle.loads(kwargs_blob)
        for param, (ref_seq, path) in refs.items():
            value = held[ref_seq]
            kwargs[param] = value if path is None else value[path]
    except Exception as exc:
        channel.send(("fail", seq, f"could not be loaded in its process: {type(exc).__name__}: {exc}"))
        return
    if timed:
        channel.send(("start", seq))
    try:
        value = func(**kwargs)
    except Exception as exc:
        from flowyml_core.errors import StopExecution

        kind = "stop" if isinstance(exc, StopExecution) else "error"
        channel.send(("raise", seq, kind, repr(exc) if kind == "error" else str(exc), _describe(exc)))
        return
    if keep:
        held[seq] = value
    try:
        data = dumps(("ok", seq, value))
    except Exception as exc:
        channel.send(("fail", seq, f"returned a value that cannot be sent back from its process: "
                                   f"{type(exc).__name__}: {exc}. Return picklable values, or run the step "
                                   "without process isolation"))
        return
    channel.send_bytes(data)


def _forked() -> None:
    """In a process a step forks (multiprocessing's default on Linux): leave the pipes alone.

    Its writes would interleave with this process's messages, and the channel's
    lock may have been copied while held. Its output goes to the terminal, as
    the output of a forked child does in process (where it lands in a copy of
    the step's capture buffer, never seen).
    """
    import logging

    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    logging.getLogger().handlers[:] = [logging.StreamHandler(sys.__stderr__)]


def main(argv: list[str] | None = None) -> None:
    requests, events, fault = (int(a) for a in (argv or sys.argv[1:4]))
    for fd in (requests, events, fault):
        os.set_inheritable(fd, False)  # a subprocess of a step must not keep the pipes open
    import faulthandler

    faulthandler.enable(file=fault, all_threads=False)
    channel = Channel(events)
    sys.stdout = Forward(channel, 1, sys.__stdout__)
    sys.stderr = Forward(channel, 2, sys.__stderr__)
    os.register_at_fork(after_in_child=_forked)
    threading.Thread(target=_watch, args=(channel, os.getppid()), name="flowyml-output", daemon=True).start()
    code = 0
    try:
        init = pickle.loads(_read(requests) or b"")
        sys.path[:] = init["sys_path"]
        # Before anything of the user's is imported: a warning at import time (a pipeline module's
        # refused run()) reaches the parent's log like the records of the steps.
        _forward_logging(channel, init["log_level"])
        held: dict[int, Any] = {}
        while True:
            frame = _read(requests)
            if frame is None:
                break
            request = pickle.loads(frame)
            if request[0] == "exit":
                break
            func_blob, kwargs_blob = _read(requests), _read(requests)
            if func_blob is None or kwargs_blob is None:
                break
            _call(channel, request, func_blob, kwargs_blob, held)
    except SystemExit as exc:  # sys.exit() in a step: the process ends with that code, as it would alone
        if isinstance(exc.code, int) or exc.code is None:
            code = exc.code or 0
        else:
            sys.stderr.write(f"{exc.code}\n")
            code = 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    channel.flush()
    os._exit(code)
