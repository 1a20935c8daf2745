"""Content fingerprints of step inputs, outputs and code.

A fingerprint is computed once, when a value is produced, and travels with it:
downstream cache keys are built from fingerprints, never by re-hashing the
value (re-hashing a 100 MB array for every consumer costs more than storing it).

Fingerprints must be equal for equal values in *another process*, under another
working directory and another absolute project path: a remote step runner
computes the keys the client computed. So nothing here may depend on memory
addresses, ``hash()`` (randomised per process for strings) or file paths. The
encoding is tagged and length-prefixed, so two different values never feed the
same bytes: a list of two strings cannot collide with one string holding both.
"""

from __future__ import annotations

import dis
import inspect
import os
import sys
import types
from typing import Any, Callable

from flowyml_core.errors import UnfingerprintableError

# hashlib, logging, pathlib and pickle (with what fingerprints values through it,
# fingerprint_pickle.py) are imported where they are used: `from flowyml_core import
# Pipeline, step` imports this module, and start-up is what every user pays
# (bench/bench_startup.py).


def fingerprint(value: Any) -> str:
    """A hex digest that changes when ``value`` changes, and only then.

    Raises :class:`UnfingerprintableError` for a value whose content cannot be
    read the same way in every process (a lock, a generator, a lambda, a list
    that contains itself): a caller must then not cache, never key on
    something per-object.
    """
    return _digest(value).hex()


def _digest(value: Any) -> bytes:
    import hashlib

    h = hashlib.sha256()
    try:
        _feed(h, value)
    except RecursionError:
        raise UnfingerprintableError(_type_name(value), "it is nested too deeply") from None
    return h.digest()


def combine(*parts: str) -> str:
    """One digest for an ordered sequence of digests or names."""
    import hashlib

    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _type_name(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


# -- the encoding ---------------------------------------------------------------------------
# A value feeds a one-letter tag, then a ``;``-terminated text (numbers), a length-prefixed
# payload (strings, bytes, pickles) or a fixed-size digest per item (sets).


def _feed_str(h: Any, value: str) -> None:
    data = value.encode("utf-8", "surrogatepass")
    h.update(b"s%d:" % len(data))
    h.update(data)


def _feed_bytes(h: Any, value: bytes | bytearray) -> None:
    h.update(b"%s%d:" % (b"b" if type(value) is bytes else b"B", len(value)))
    _feed_payload(h, value, len(value))


#: From this size on, a payload enters the key as its BLAKE3 digest instead of byte by byte:
#: SHA-256 runs at ~1 GB/s on a core without SHA extensions, BLAKE3 at ~3 GB/s on one core and
#: more on several, so a 512 MB output costs 0.2 s to fingerprint instead of 0.5 s. The
#: length is always fed before the payload, so a given length is always encoded the same
#: way, and a digest can never be mistaken for the raw bytes of another value.
LARGE_PAYLOAD = 1 << 20
#: BLAKE3 spreads a payload this large over the cores (the digest is the same either way).
_THREADED_PAYLOAD = 16 << 20


def _feed_payload(h: Any, data: Any, nbytes: int) -> None:
    """The raw bytes of a value (a bytes-like object of ``nbytes`` bytes, C-contiguous)."""
    if nbytes < LARGE_PAYLOAD:
        h.update(data)
        return
    from blake3 import blake3

    if not isinstance(data, (bytes, bytearray)):
        data = memoryview(data).cast("B")  # BLAKE3 takes bytes only: a view of "d" or of 2-D is refused
    threads = blake3.AUTO if nbytes >= _THREADED_PAYLOAD else 1
    h.update(blake3(data, max_threads=threads).digest())


def _feed_memoryview(h: Any, value: memoryview) -> None:
    try:
        h.update(f"m{value.format}|{value.itemsize}|{value.shape}|{value.nbytes}:".encode())
        # hashlib reads only C-contiguous buffers; tobytes() copies any other layout in logical order.
        _feed_payload(h, value if value.c_contiguous else value.tobytes(), value.nbytes)
    except ValueError as exc:  # a released view
        raise UnfingerprintableError("memoryview", str(exc)) from None


def _feed_set(h: Any, value: set[Any] | frozenset[Any]) -> None:
    h.update(b"%s%d;" % (b"S" if type(value) is set else b"Z", len(value)))
    for digest in _sorted_digests(value):
        h.update(digest)


def _sorted_digests(items: set[Any] | frozenset[Any]) -> list[bytes]:
    """The items' digests in sorted order: iteration order follows ``hash()``, which
    for strings differs from process to process."""
    return sorted(map(_digest, items))


def _float_text(value: float) -> bytes:
    """Exact, ``-0.0`` apart from ``0.0``; ``hex()`` drops the sign of a NaN, which
    ``math.copysign`` and ``np.signbit`` still see (``inf * 0`` is ``-nan`` on x86)."""
    text = value.hex()
    if text == "nan":
        import math

        return b"-nan" if math.copysign(1.0, value) < 0 else b"nan"
    return text.encode()


_HANDLERS: dict[type, Callable[[Any, Any], None]] = {
    type(None): lambda h, v: h.update(b"N"),
    bool: lambda h, v: h.update(b"T" if v else b"F"),
    int: lambda h, v: h.update(b"i%x;" % v),  # hex: no digit limit for big ints
    float: lambda h, v: h.update(b"f" + _float_text(v) + b";"),
    complex: lambda h, v: h.update(b"c" + _float_text(v.real) + b"," + _float_text(v.imag) + b";"),
    str: _feed_str,
    bytes: _feed_bytes,
    bytearray: _feed_bytes,
    memoryview: _feed_memoryview,
    set: _feed_set,
    frozenset: _feed_set,
}


def _feed(h: Any, value: Any) -> None:
    kind = type(value)
    handler = _HANDLERS.get(kind)
    if handler is not None:
        handler(h, value)
        return
    np = sys.modules.get("numpy")  # a numpy value means numpy is imported; never import it here
    if np is not None:
        if _is_array(kind):
            _feed_array(h, value, np)
            return
        if isinstance(value, np.generic):
            h.update(b"g")
            _feed_array(h, np.asarray(value), np)
            return
    if kind is types.CodeType:
        h.update(b"k" + _code_digest(value).encode())
        return
    from flowyml_core.fingerprint_pickle import feed_pickle  # pickle: imported when a value needs it

    feed_pickle(h, value)


def _is_array(kind: type) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and (kind is np.ndarray or kind is np.memmap)


def dtype_description(dtype: Any) -> str:
    """The whole of a numpy dtype: byte order, unit, field names, offsets, titles, sub-arrays.

    ``dtype.str`` alone is ``|V12`` for every 12-byte record, so arrays with
    different field names over the same bytes would collide.
    """
    if dtype.fields is not None:
        fields = []
        for name in dtype.names:
            field = dtype.fields[name]
            title = f"~{field[2]!r}" if len(field) > 2 else ""
            fields.append(f"{name!r}:{dtype_description(field[0])}@{field[1]}{title}")
        return "{" + ",".join(fields) + f"}}{dtype.itemsize}{'A' if dtype.isalignedstruct else ''}"
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        return f"({dtype_description(base)}){shape}"
    return dtype.str


def _feed_array(h: Any, array: Any, np: Any) -> None:
    dtype = array.dtype
    h.update(f"a{dtype_description(dtype)}|{array.shape};".encode())
    if dtype.hasobject or dtype.kind == "T":
        # Object (and variable-width string) arrays hold pointers: fingerprint the items.
        _feed(h, array.tolist())
        return
    # Raw bytes through a uint8 view: the buffer protocol refuses datetime64/timedelta64
    # ("cannot include dtype 'M' in a buffer"); a view works for every fixed-size dtype.
    contiguous = np.ascontiguousarray(array)
    _feed_payload(h, contiguous.view(np.uint8).data, contiguous.nbytes)


# -- code ---------------------------------------------------------------------------------------
def module_identity(obj: Any) -> str:
    """The module ``obj`` belongs to, named the same way in every process.

    A pipeline file run as a script is ``__main__`` here but is imported under its
    file stem by the step runner (see ``flowyml_core.loader``), so ``__main__``
    is named by the stem of its ``__file__``. Never a path: a container imports
    the project from another directory.
    """
    name = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
    if name is None:
        return "?"
    if name != "__main__":
        return name
    namespace = getattr(obj, "__globals__", None)
    if namespace is None:
        main = obj if isinstance(obj, types.ModuleType) else sys.modules.get("__main__")
        namespace = vars(main) if main is not None else {}
    file = namespace.get("__file__")
    return os.path.splitext(os.path.basename(file))[0] if file else "__main__"


def qualified_name(obj: Any) -> str:
    """``module.qualname`` of a function, class or module, ``__main__`` named by its file."""
    if isinstance(obj, types.ModuleType):
        return module_identity(obj)
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or _type_name(obj)
    return f"{module_identity(obj)}.{qualname}"


_CODE_HASHES: dict[Any, str] = {}
_CODE_DIGESTS: dict[types.CodeType, str] = {}
_GLOBAL_NAMES: dict[types.CodeType, tuple[str, ...]] = {}


def code_fingerprint(func: Callable[..., Any]) -> str:
    """Digest of a function's qualified name and source (its bytecode when there is no source).

    Source is preferred: it is the same text in another process, another
    directory and another Python version. Code without a source file (``exec``,
    ``python -c``, stdin) is keyed by its bytecode and constants, nested code
    objects included, never by a ``repr`` that holds an address. Digests are
    remembered per code object: a thousand steps wrapping one function read its
    source once.
    """
    target = inspect.unwrap(func)
    code = getattr(target, "__code__", None)
    name = qualified_name(target)
    if code is not None and (code, name) in _CODE_HASHES:
        return _CODE_HASHES[(code, name)]
    try:
        text = "source:" + inspect.getsource(target)
        if code is not None and (code.co_name == "<lambda>" or _bytecode_may_be_stale(target)):
            # The source of a lambda is its whole line: two lambdas on one line need their code.
            # And code loaded from a .pyc that may predate the source is keyed by what runs too.
            text += "\x1f" + _code_digest(code)
    except (OSError, TypeError):
        text = "code:" + _code_digest(code) if code is not None else "builtin"
    digest = combine(name, text)
    if code is not None:
        _CODE_HASHES[(code, name)] = digest
    return digest


_STALE_BYTECODE: dict[tuple[int, str], bool] = {}  # per import (a reload makes a new spec) of a .pyc


def _bytecode_may_be_stale(func: Any) -> bool:
    """Whether ``func``'s module may have been loaded from a ``.pyc`` older than its source.

    Python trusts a ``.pyc`` whose recorded source mtime (whole seconds) and size
    match the file: a same-size edit within the second of the last compile (a
    script or a test that rewrites a pipeline file and runs it again) runs the
    old code while ``inspect.getsource`` reads the new text. Keyed by the
    source alone, the old code's result would be stored under the new code's
    key. A ``.pyc`` written by an import is newer than the source it was
    compiled from, so a source at least as new as its ``.pyc`` is suspect.
    """
    module = sys.modules.get(getattr(func, "__module__", None) or "")
    spec = getattr(module, "__spec__", None)
    cached, origin = getattr(spec, "cached", None), getattr(spec, "origin", None)
    if not cached or not origin:
        return False
    known = _STALE_BYTECODE.get((id(spec), cached))
    if known is None:
        try:
            known = os.stat(origin).st_mtime_ns >= os.stat(cached).st_mtime_ns
        except OSError:  # no .pyc (not written, or removed since): nothing to compare, nothing stale known
            known = False
        _STALE_BYTECODE[(id(spec), cached)] = known
    return known


def _code_digest(code: types.CodeType) -> str:
    """What a code object does, without where it came from (file, line numbers)."""
    known = _CODE_DIGESTS.get(code)
    if known is not None:
        return known
    import hashlib

    h = hashlib.sha256()
    for field in ("co_argcount", "co_posonlyargcount", "co_kwonlyargcount", "co_flags", "co_name",
                  "co_names", "co_varnames", "co_freevars", "co_cellvars", "co_code", "co_exceptiontable"):
        _feed(h, getattr(code, field, None))
    h.update(b"consts")
    for const in code.co_consts:  # nested code objects (lambdas, comprehensions) recurse through _feed
        _feed(h, const)
    digest = _CODE_DIGESTS[code] = h.hexdigest()
    return digest


_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})
_ATTR_OPS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_GLOBAL_READS: dict[types.CodeType, tuple[tuple[str, ...], ...]] = {}


def global_names(code: types.CodeType) -> tuple[str, ...]:
    """The global names a code object (and the lambdas, comprehensions and functions inside it) loads.

    From the bytecode, not ``co_names``: ``co_names`` also lists attribute names
    (``np.array`` gives ``array``), which would key a step on unrelated globals.
    """
    known = _GLOBAL_NAMES.get(code)
    if known is not None:
        return known
    result = _GLOBAL_NAMES[code] = tuple(sorted({read[0] for read in global_reads(code)}))
    return result


def global_reads(code: types.CodeType) -> tuple[tuple[str, ...], ...]:
    """Each global a code object loads, with the attributes read right after it, sorted.

    ``Config.ROWS`` gives ``("Config", "ROWS")``, ``np.linalg.norm`` gives
    ``("np", "linalg", "norm")``, a bare ``ROWS`` gives ``("ROWS",)``. The key
    reads the value at the end of such a chain when the global is a module or a
    class: their names alone say nothing of the data they hold.
    """
    known = _GLOBAL_READS.get(code)
    if known is None:
        known = _GLOBAL_READS[code] = _chains(code, _GLOBAL_OPS, None)
    return known


_LOCAL_OPS = frozenset({"LOAD_FAST", "LOAD_DEREF", "LOAD_FAST_CHECK", "LOAD_FAST_AND_CLEAR", "LOAD_FAST_BORROW"})
#: Two locals loaded by one instruction (3.13+): the second one is what a following attribute is read from.
_LOCAL_PAIR_OPS = frozenset({"LOAD_FAST_LOAD_FAST", "LOAD_FAST_BORROW_LOAD_FAST_BORROW"})


def attribute_reads(code: types.CodeType, name: str) -> tuple[tuple[str, ...], ...]:
    """The attribute chains a code object (and the code inside it) reads from its local ``name``.

    For a method, ``self.FACTOR`` gives ``("self", "FACTOR")``: the class
    attributes a bound method or a callable object reads are not in the
    object's own state.
    """
    return _chains(code, _LOCAL_OPS, name)


def _chains(code: types.CodeType, start: frozenset[str], name: str | None) -> tuple[tuple[str, ...], ...]:
    reads: set[tuple[str, ...]] = set()
    chain: list[str] | None = None
    for instruction in dis.get_instructions(code):
        opname = instruction.opname
        if chain is not None and opname in _ATTR_OPS:
            chain.append(instruction.argval)
            continue
        if chain is not None:
            reads.add(tuple(chain))
            chain = None
        if opname in start and (name is None or instruction.argval == name):
            chain = [instruction.argval]
        elif name is not None and opname in _LOCAL_PAIR_OPS and instruction.argval[-1] == name:
            chain = [name]
    if chain is not None:
        reads.add(tuple(chain))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            reads.update(_chains(const, start, name))
    return tuple(sorted(reads))


_WARNED: set[Any] = set()


def warn_once(key: Any, message: str, *args: Any) -> None:
    """Log a cache warning once per process for ``key``: a step in a loop must not flood the log."""
    if key in _WARNED:
        return
    _WARNED.add(key)
    import logging

    logging.getLogger("flowyml.cache").warning(message, *args)
