"""Materializers: how a Python object becomes bytes in a store, and back.

A store picks the materializer by the object's type, safe formats first:

=========  ========================================  ======================  =========
name       types                                     format                  safe
=========  ========================================  ======================  =========
json       dict/list/str/int/float/bool/None that     UTF-8 JSON              yes
           round-trip *exactly* (str keys, no
           tuples, no subclasses)
bytes      bytes, bytearray                          raw                     yes
npy        numpy.ndarray without object dtype        ``.npy`` (no pickle)    yes
parquet    pandas.DataFrame (pandas + pyarrow)       parquet                 yes
pickle     anything else                             pickle protocol 5       **no**
=========  ========================================  ======================  =========

An object that a candidate cannot store exactly falls through to the next one
(a tuple is not JSON, an object array is not ``.npy`` without pickle, a frame
with non-string column names is not parquet), ending at pickle. Loading an
``unsafe`` format requires a valid signature (see :mod:`flowyml_local.signing`).

Writing a materializer (a plugin adds one through the ``register_materializers``
hook: ``register("arrow", "pkg.mod:ArrowMaterializer", types=("pyarrow.Table",),
priority=10)``)::

    class ArrowMaterializer(Materializer):
        name = "arrow"
        extension = ".arrow"
        def save(self, obj):            # -> list of bytes-like buffers, written in order
            ...
        def load(self, data, info):     # data: a bytes-like with the whole payload
            ...

``can_save(obj)`` refines the type match; ``save`` may raise TypeError or
ValueError to decline (the next candidate is tried); ``info(obj)`` adds a small
JSON dict to the entry's header (shape, dtype…) that ``load`` receives back;
``allocate(size)`` may return the writable buffer ``load`` will receive (numpy
uses it to read straight into an array's memory); ``unsafe = True`` marks
formats whose loading can run code.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from typing import Any, Iterable, Iterator, Sequence

from flowyml_core.errors import FlowymlError, IntegrityError

logger = logging.getLogger("flowyml.stores.materializers")

Buffer = Any  # bytes, bytearray, memoryview, or a numpy uint8 array


class Materializer:
    """Base class; see the module docstring for the protocol."""

    #: Registered name, recorded in every entry's header.
    name: str = ""
    #: File extension of the stored payload (informative only).
    extension: str = ""
    #: True when loading may execute code (pickle): loads need a signature or an explicit opt-in.
    unsafe: bool = False

    def can_save(self, obj: Any) -> bool:
        return True

    def save(self, obj: Any) -> Sequence[Buffer]:
        raise NotImplementedError

    def info(self, obj: Any) -> dict[str, Any] | None:
        return None

    def allocate(self, size: int) -> Buffer | None:
        """A writable buffer for a payload of ``size`` bytes, or None for plain ``bytes``."""
        return None

    def load(self, data: Buffer, info: dict[str, Any] | None) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


# -- JSON ----------------------------------------------------------------------
_JSON_SCALARS = frozenset((str, int, float, bool, type(None)))


def json_exact(obj: Any, depth: int = 0) -> bool:
    """True when ``json.loads(json.dumps(obj)) `` gives back the same types and values."""
    kind = type(obj)
    if kind in _JSON_SCALARS:
        return True
    if depth > 100:
        return False
    if kind is list:
        scalars = _JSON_SCALARS
        for value in obj:
            if type(value) not in scalars and not json_exact(value, depth + 1):
                return False
        return True
    if kind is dict:
        scalars = _JSON_SCALARS
        for key, value in obj.items():
            if type(key) is not str:
                return False
            if type(value) not in scalars and not json_exact(value, depth + 1):
                return False
        return True
    return False


_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=True, separators=(",", ":")).encode
_dumps_ascii = json.JSONEncoder(ensure_ascii=True, allow_nan=True, separators=(",", ":")).encode


class JsonMaterializer(Materializer):
    """JSON for builtins that round-trip exactly (NaN/Infinity are kept, as Python's json does)."""

    name = "json"
    extension = ".json"

    def can_save(self, obj: Any) -> bool:
        return json_exact(obj)

    def save(self, obj: Any) -> Sequence[Buffer]:
        try:
            return [_dumps(obj).encode("utf-8")]
        except UnicodeEncodeError:  # lone surrogates: keep them as \\u escapes
            return [_dumps_ascii(obj).encode("ascii")]

    def load(self, data: Buffer, info: dict[str, Any] | None) -> Any:
        return json.loads(data if isinstance(data, (bytes, bytearray)) else bytes(data))


# -- bytes ---------------------------------------------------------------------
class BytesMaterializer(Materializer):
    name = "bytes"
    extension = ".bin"

    def can_save(self, obj: Any) -> bool:
        return type(obj) in (bytes, bytearray)

    def save(self, obj: Any) -> Sequence[Buffer]:
        return [obj]

    def info(self, obj: Any) -> dict[str, Any] | None:
        return {"bytearray": True} if type(obj) is bytearray else None

    def load(self, data: Buffer, info: dict[str, Any] | None) -> Any:
        if info and info.get("bytearray"):
            return data if type(data) is bytearray else bytearray(data)
        return data if type(data) is bytes else bytes(data)


# -- numpy ---------------------------------------------------------------------
class NumpyMaterializer(Materializer):
    """``.npy`` files written and read without pickle (``allow_pickle=False`` semantics)."""

    name = "npy"
    extension = ".npy"

    def can_save(self, obj: Any) -> bool:
        return not obj.dtype.hasobject

    def _layout(self, arr: Any) -> tuple[Any, bool]:
        if arr.flags.c_contiguous:
            return arr, False
        if arr.flags.f_contiguous:
            return arr.T, True  # .T of a Fortran-ordered array is C-contiguous: no copy
        import numpy as np

        return np.ascontiguousarray(arr), False

    def save(self, obj: Any) -> Sequence[Buffer]:
        from numpy.lib import format as npy_format

        if obj.dtype.hasobject:
            raise TypeError("object arrays need pickle")
        data, fortran = self._layout(obj)
        header = {"descr": npy_format.dtype_to_descr(obj.dtype), "fortran_order": fortran, "shape": obj.shape}
        out = io.BytesIO()
        try:
            npy_format.write_array_header_1_0(out, header)
        except ValueError:  # header too long for format 1.0
            out = io.BytesIO()
            npy_format.write_array_header_2_0(out, header)
        # A byte view of the C-contiguous data: no copy, and works for every dtype
        # (memoryview() refuses datetime64 and some structured dtypes).
        body = data.reshape(-1).view("u1") if data.size else b""
        return [out.getvalue(), body]

    def info(self, obj: Any) -> dict[str, Any] | None:
        return {"dtype": obj.dtype.str, "shape": list(obj.shape)}

    def allocate(self, size: int) -> Buffer | None:
        import numpy as np

        return np.empty(size, dtype=np.uint8)

    def load(self, data: Buffer, info: dict[str, Any] | None) -> Any:
        import numpy as np
        from numpy.lib import format as npy_format

        view = memoryview(data).cast("B") if not isinstance(data, np.ndarray) else data
        raw = bytes(view[:12])
        if raw[:6] != b"\x93NUMPY":
            raise IntegrityError("payload is not an .npy file (bad magic)")
        major = raw[6]
        if major == 1:
            header_end = 10 + int.from_bytes(raw[8:10], "little")
        elif major in (2, 3):
            header_end = 12 + int.from_bytes(raw[8:12], "little")
        else:
            raise IntegrityError(f"unsupported .npy format version {major}")
        header_file = io.BytesIO(bytes(view[:header_end]))
        npy_format.read_magic(header_file)
        if major == 1:
            shape, fortran, dtype = npy_format.read_array_header_1_0(header_file)
        else:
            shape, fortran, dtype = npy_format.read_array_header_2_0(header_file)
        if dtype.hasobject:
            raise IntegrityError("refusing an .npy payload with object dtype: loading it would need pickle")
        count = 1
        for n in shape:
            count *= n
        if isinstance(data, bytes):  # read-only source: give the caller an array it may modify
            arr = np.frombuffer(data, dtype=dtype, count=count, offset=header_end).copy()
        else:
            arr = np.frombuffer(data, dtype=dtype, count=count, offset=header_end)
        if fortran:
            return arr.reshape(shape[::-1]).T
        return arr.reshape(shape)


# -- pandas --------------------------------------------------------------------
class ParquetMaterializer(Materializer):
    """pandas DataFrames as parquet through pyarrow (when both are installed)."""

    name = "parquet"
    extension = ".parquet"

    def can_save(self, obj: Any) -> bool:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            return False
        return all(type(c) is str for c in obj.columns)

    def save(self, obj: Any) -> Sequence[Buffer]:
        out = io.BytesIO()
        obj.to_parquet(out, engine="pyarrow")
        return [out.getbuffer()]

    def load(self, data: Buffer, info: dict[str, Any] | None) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        return pq.read_table(pa.BufferReader(data)).to_pandas()


# -- pickle --------------------------------------------------------------------
class PickleMaterializer(Materializer):
    """The fallback. Loading runs code: stores require a signature or an opt-in."""

    name = "pickle"
    extension = ".pkl"
    unsafe = True

    def save(self, obj: Any) -> Sequence[Buffer]:
        import pickle

        return [pickle.dumps(obj, protocol=5)]

    def load(self, data: Buffer, info: dict[str, Any] | None) -> Any:
        import pickle

        return pickle.loads(data)


#: Built-in materializers: (name, implementation, types, priority). The local
#: plugin registers the same through the hook; these are the fallback when the
#: registry is unavailable (plugin disabled, stores used as a library).
BUILTIN_SPECS: tuple[tuple[str, Any, tuple[str, ...], int], ...] = (
    ("json", JsonMaterializer, ("builtins.dict", "builtins.list", "builtins.str", "builtins.int",
                                "builtins.float", "builtins.bool", "builtins.NoneType"), 10),
    ("bytes", BytesMaterializer, ("builtins.bytes", "builtins.bytearray"), 10),
    ("npy", NumpyMaterializer, ("numpy.ndarray",), 10),
    ("parquet", ParquetMaterializer, ("pandas.DataFrame", "pandas.core.frame.DataFrame"), 10),
    ("pickle", PickleMaterializer, ("builtins.object",), -100),
)
ALIASES = {"numpy": "npy", "pkl": "pickle", "raw": "bytes"}


def _type_names(kind: type) -> Iterable[tuple[int, str]]:
    for distance, klass in enumerate(kind.__mro__):
        yield distance, f"{klass.__module__}.{klass.__qualname__}"


class MaterializerSet:
    """The materializers a store can use: choose by type, find by name.

    ``specs`` are ``MaterializerSpec``-like objects (``name``, ``implementation``,
    ``types``, ``priority``) or tuples; by default the registry's specs (the
    ``register_materializers`` hook) plus the built-ins not overridden there.
    """

    def __init__(self, specs: Iterable[Any] | None = None) -> None:
        self._specs: list[tuple[str, Any, tuple[str, ...], int]] | None = (
            None if specs is None else [_as_tuple(s) for s in specs]
        )
        self._by_name: dict[str, Materializer] = {}
        self._by_type: dict[type, list[Materializer]] = {}
        self._lock = threading.Lock()
        self._ready = False

    def _load(self) -> None:
        with self._lock:
            if self._ready:
                return
            specs = self._specs
            if specs is None:
                specs = []
                try:
                    from flowyml_core.plugins import get_registry

                    specs = [_as_tuple(s) for s in get_registry().materializer_specs()]
                except Exception as exc:  # the built-ins below still work
                    logger.warning("cannot read materializers from plugins (%r); using the built-in ones", exc)
                known = {s[0] for s in specs}
                specs += [s for s in BUILTIN_SPECS if s[0] not in known]
            self._entries: list[tuple[str, Any, frozenset[str], int]] = [
                (name, impl, frozenset(types), priority) for name, impl, types, priority in specs
            ]
            self._ready = True

    def _instance(self, name: str, impl: Any) -> Materializer | None:
        found = self._by_name.get(name)
        if found is not None:
            return found
        try:
            from flowyml_core.plugins import import_object

            obj = import_object(impl)
            instance = obj() if isinstance(obj, type) else obj
        except Exception as exc:
            logger.warning("materializer %r (%s) cannot be loaded: %r", name, impl, exc)
            return None
        if not getattr(instance, "name", None):
            try:
                instance.name = name
            except AttributeError:
                pass
        self._by_name[name] = instance
        return instance

    def names(self) -> list[str]:
        self._load()
        return [e[0] for e in self._entries]

    def by_name(self, name: str) -> Materializer:
        """The materializer registered as ``name`` (aliases: numpy→npy, pkl→pickle, raw→bytes)."""
        if not self._ready:
            self._load()
        found = self._by_name.get(name)
        if found is not None:
            return found
        name = ALIASES.get(name, name)
        for entry_name, impl, _, _ in self._entries:
            if entry_name == name:
                instance = self._instance(entry_name, impl)
                if instance is not None:
                    return instance
        raise FlowymlError(
            f"no materializer named {name!r} is installed (available: {', '.join(self.names())}); "
            "install the plugin that provides it"
        )

    def candidates(self, kind: type) -> list[Materializer]:
        """Materializers that declare ``kind`` (or a base class), best first."""
        found = self._by_type.get(kind)
        if found is not None:
            return found
        if not self._ready:
            self._load()
        ranked = []
        names = list(_type_names(kind))
        for order, (name, impl, types, priority) in enumerate(self._entries):
            for distance, type_name in names:
                if type_name in types:
                    ranked.append((-priority, distance, order, name, impl))
                    break
        ranked.sort(key=lambda r: r[:3])
        result = [m for m in (self._instance(r[3], r[4]) for r in ranked) if m is not None]
        self._by_type[kind] = result
        return result

    def choose(self, obj: Any) -> Iterator[Materializer]:
        """Candidates for ``obj`` whose ``can_save`` accepts it, best first.

        Lazily: a store takes the first that can save the value, and the others'
        ``can_save`` never runs (a pipeline writes a small value per step).
        """
        for m in self.candidates(type(obj)):
            try:
                accepted = m.can_save(obj)
            except Exception as exc:  # a faulty can_save must not stop the fallbacks
                logger.debug("materializer %s.can_save failed: %r", m.name, exc)
                continue
            if accepted:
                yield m


def _as_tuple(spec: Any) -> tuple[str, Any, tuple[str, ...], int]:
    if isinstance(spec, tuple):
        name, impl, types, priority = spec
        return name, impl, tuple(types), int(priority)
    return spec.name, spec.implementation, tuple(spec.types), int(spec.priority)


_default: tuple[Any, MaterializerSet] | None = None


def default_materializers() -> MaterializerSet:
    """One set per plugin registry, built from its ``register_materializers`` hooks (stores share it)."""
    global _default
    from flowyml_core.plugins import get_registry

    registry = get_registry()
    if _default is None or _default[0] is not registry:
        _default = (registry, MaterializerSet())
    return _default[1]
