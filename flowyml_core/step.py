"""Steps: user functions with their wiring and run policy."""

from __future__ import annotations

import functools
import inspect
import sys
import types
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import attrs

from flowyml_core.errors import DefinitionError, UnfingerprintableError
from flowyml_core.fingerprint import (
    attribute_reads,
    code_fingerprint,
    combine,
    fingerprint,
    global_reads,
    module_identity,
    qualified_name,
    warn_once,
)
from flowyml_core.step_checks import a_type, check_definition, defined_at

if TYPE_CHECKING:  # a step's resources are built by the user; importing the class costs every pipeline file ~2 ms
    from flowyml_core.resources import ResourceConfig


def signature_names(func: Callable[..., Any]) -> tuple[tuple[str, ...], bool]:
    """The named parameters of ``func`` (self/cls excluded) and whether it takes ``**kwargs``."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return (), True
    names = tuple(
        p.name
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", "cls")
    )
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def _names(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    try:
        return tuple(value)
    except TypeError:  # not a list of names: the definition check says so, naming the step
        return (value,)  # type: ignore[return-value]


#: The settings a person gives ``@step``: checked again when one is set on a defined step.
_SETTINGS = frozenset({"name", "inputs", "outputs", "cache", "retry", "retry_delay", "timeout", "condition",
                       "resources", "execution_group", "tags", "version"})


@attrs.define(eq=False, repr=False, slots=False, on_setattr=attrs.setters.NO_OP)
class Step:
    """A function plus what it consumes, produces and how it may be retried.

    Signature facts and the code hash are computed once per step, not per call:
    the executor's per-step overhead is what users pay a thousand times.
    """

    func: Callable[..., Any]
    name: str = attrs.field(default=None)
    inputs: tuple[str, ...] = attrs.field(default=(), converter=_names)
    outputs: tuple[str, ...] = attrs.field(default=(), converter=_names)
    cache: bool = True
    retry: int = 0
    retry_delay: float = 1.0
    timeout: float | None = None
    condition: Callable[..., Any] | None = None
    resources: ResourceConfig | None = None
    execution_group: str | None = None
    tags: dict[str, str] = attrs.field(factory=dict)
    version: str | int | None = None
    param_names: tuple[str, ...] = attrs.field(init=False)
    accepts_any_kwargs: bool = attrs.field(init=False)
    _code_hash: str = attrs.field(init=False, default="")
    _target: Any = attrs.field(init=False, default=None)
    _bound: tuple[tuple[str, Any], ...] = attrs.field(init=False, default=())
    _parts: tuple[types.FunctionType, ...] = attrs.field(init=False, default=())
    _global_reads: tuple[tuple[tuple[str, ...], ...], ...] = attrs.field(init=False, default=())
    _self_reads: tuple[tuple[str, ...], ...] = attrs.field(init=False, default=())
    _reads_values: bool = attrs.field(init=False, default=False)
    _hashed: tuple[str, ...] = attrs.field(init=False, default=())

    def __setattr__(self, key: str, value: Any) -> None:
        """A setting changed on a defined step (``s.retry = 2``) is checked as ``@step`` checks it.

        A bad one is refused and the old value kept; a new ``version`` changes
        the code hash, as ``version=`` given to ``@step`` does.
        """
        if key not in _SETTINGS or not self.__dict__.get("_code_hash"):  # not a setting, or still being defined
            object.__setattr__(self, key, value)
            return
        old = self.__dict__[key]
        object.__setattr__(self, key, _names(value) if key in ("inputs", "outputs") else value)
        try:
            check_definition(self)
        except DefinitionError:
            object.__setattr__(self, key, old)
            raise
        if key == "version":
            object.__setattr__(self, "_code_hash", combine(*self._hashed, f"version={value!r}"))

    def __attrs_post_init__(self) -> None:
        if not callable(self.func):
            raise DefinitionError(f"a step wraps a function (a callable), got {self.func!r} ({a_type(self.func)})")
        if self.name is None:
            self.name = getattr(self.func, "__name__", "step")
        self.param_names, self.accepts_any_kwargs = signature_names(self.func)
        check_definition(self)
        functools.update_wrapper(self, self.func, updated=())
        # The code is hashed now, when the step is defined, not when a key is first
        # needed: a file edited between import and run must not have the old
        # function's result stored under the new source's hash.
        self._target, self._bound, layers = _resolve(self.func)
        target = self._target
        self._parts = _parts_of(target, layers)
        self._global_reads = tuple(_data_reads(part) for part in self._parts)
        code = getattr(target, "__code__", None)
        if self._bound and self._bound[-1][0] == "self" and isinstance(code, types.CodeType) and code.co_argcount:
            self._self_reads = tuple(r for r in attribute_reads(code, code.co_varnames[0]) if len(r) > 1)
        self._reads_values = bool(self._bound or any(self._global_reads)) or any(
            part.__closure__ or part.__defaults__ or part.__kwdefaults__ for part in self._parts
        )
        # The decorators' wrappers and the functions held in closure cells (a decorator's ``f``, a
        # local helper) are code of this step: their source is in the hash, not only their names.
        others = [code_fingerprint(part) for part in self._parts if part is not target]
        self._hashed = (module_identity(target), code_fingerprint(target), *others)
        self._code_hash = combine(*self._hashed, f"version={self.version!r}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __reduce_ex__(self, protocol: Any) -> Any:
        """Pickle a module-level ``@step`` by reference, as pickle does a function.

        ``@step`` rebinds the function's name to the Step, so pickling the Step's
        function by name fails ("not the same object as module.name") and a
        process pool could not run decorated steps. A Step reachable as
        ``module.qualname`` is sent as that reference; any other (a step in
        ``__main__``, in a function, or in a module cloudpickle ships by value)
        is pickled field by field as before.

        The reference carries the code hash: the process that loads it imports
        the module from disk, and if the file was edited since this process
        imported it, the new code would run under the old code's cache key.
        """
        reference = self._reference()
        if reference is not None:
            return (_step_by_reference, (*reference, self._code_hash))
        return super().__reduce_ex__(protocol)

    def _reference(self) -> tuple[str, str] | None:
        module_name = getattr(self.func, "__module__", None)
        qualname = getattr(self.func, "__qualname__", None)
        if not module_name or not qualname or module_name == "__main__" or "<locals>" in qualname:
            return None
        module = sys.modules.get(module_name)
        if module is None:
            return None
        cloudpickle = sys.modules.get("cloudpickle")
        if cloudpickle is not None and hasattr(cloudpickle, "list_registry_pickle_by_value"):
            for by_value in cloudpickle.list_registry_pickle_by_value():
                if module_name == by_value or module_name.startswith(by_value + "."):
                    return None
        obj: Any = module
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
        return (module_name, qualname) if obj is self else None

    def __repr__(self) -> str:
        return f"Step({self.name!r}, inputs={list(self.inputs)}, outputs={list(self.outputs)})"

    def get_code_hash(self) -> str:
        """What runs: module identity, qualified name, source (or bytecode) and ``version``.

        Computed once, when the step was created.
        """
        return self._code_hash

    def filter_kwargs(self, available: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments from ``available`` that the function accepts."""
        if self.accepts_any_kwargs:
            return dict(available)
        return {k: available[k] for k in self.param_names if k in available}

    def get_cache_key(
        self,
        inputs: Mapping[str, Any],
        context_params: Mapping[str, Any] | None = None,
        input_fingerprints: Mapping[str, str] | None = None,
    ) -> str:
        """Key over what runs and what it reads (see docs/reference/executor.md, "Cache keys").

        The step's name and code hash; the values its function reads besides
        its arguments (module globals, closure cells, defaults, bound
        ``self``/partial arguments), read now; its inputs; and the run
        parameters it receives. ``context_params`` may hold every parameter of
        the run; those the function does not accept are left out of the key.

        ``input_fingerprints`` supplies digests already computed when the inputs
        were produced; any input without one is hashed here.

        Raises :class:`~flowyml_core.errors.UnfingerprintableError` (naming the
        step and the input or parameter) when an input or parameter cannot be
        fingerprinted: the step cannot be cached, and a caller runs it without
        the cache.
        """
        known = input_fingerprints or {}
        parts = [self.name, self._code_hash]
        if self._reads_values:  # known when the step was made: most steps of a long chain read nothing
            parts += self._reads()
        for key in sorted(inputs):
            parts.append(f"i:{key}={known.get(key) or self._value_fingerprint(inputs[key], 'input', key)}")
        # Only the parameters the function receives: a run-wide parameter the
        # step does not take cannot change its result, so it must not be a miss.
        received = self.filter_kwargs(context_params or {})
        for key in sorted(received):
            parts.append(f"p:{key}={self._value_fingerprint(received[key], 'parameter', key)}")
        return combine(*parts)

    def _value_fingerprint(self, value: Any, kind: str, name: str) -> str:
        try:
            return fingerprint(value)
        except UnfingerprintableError as exc:
            raise UnfingerprintableError(exc.type_name, exc.reason, where=f"step {self.name!r}: {kind} {name!r}") from None

    def _reads(self) -> list[str]:
        """The values the function reads besides its arguments, as they are now."""
        parts = [f"b:{label}={self._read_value(value, label)}" for label, value in self._bound]
        if self._self_reads:
            owner = self._bound[-1][1]  # what the target's first argument is bound to
            whole = parts[-1]
            for read in self._self_reads:
                self._chain_read(owner, read, "s:", parts, whole[whole.index("=") + 1:])
        home = getattr(self._target, "__module__", None)
        for index, (function, reads) in enumerate(zip(self._parts, self._global_reads)):
            if function is self._target:
                self._function_reads(function, reads, "", "", parts)
            else:
                # A library's decorator reads its own module's objects (locks, registries): keyed like
                # the others, but the warning about one that cannot be fingerprinted is not the user's.
                quiet = function.__module__ != home
                self._function_reads(function, reads, f"{index}.", f" of {function.__qualname__}()", parts,
                                     quiet=quiet)
        return parts

    def _function_reads(
        self, function: types.FunctionType, reads: tuple[tuple[str, ...], ...], prefix: str, of: str, parts: list[str],
        seen: frozenset[int] = frozenset(), quiet: bool = False,
    ) -> None:
        for i, value in enumerate(function.__defaults__ or ()):
            parts.append(f"{prefix}d:{i}={self._read_value(value, f'default #{i}{of}', quiet, seen)}")
        for key, value in sorted((function.__kwdefaults__ or {}).items()):
            parts.append(f"{prefix}d:{key}={self._read_value(value, f'default {key!r}{of}', quiet, seen)}")
        for name, cell in zip(function.__code__.co_freevars, function.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:  # a cell not assigned yet
                parts.append(f"{prefix}c:{name}=<empty>")
                continue
            if any(value is part for part in self._parts):  # its code is in the code hash
                parts.append(f"{prefix}c:{name}=part:{value.__qualname__}")
                continue
            parts.append(f"{prefix}c:{name}={self._read_value(value, f'closure variable {name!r}{of}', quiet, seen)}")
        namespace = function.__globals__
        keyed: dict[str, str] = {}  # each global once, however many attributes are read through it
        for read in reads:
            name = read[0]
            if name not in namespace:  # a builtin, or not defined yet
                continue
            value = namespace[name]
            whole = keyed.get(name)
            if whole is None:
                whole = keyed[name] = self._read_value(value, f'global {name!r}{of}', quiet, seen)
                parts.append(f"{prefix}g:{name}={whole}")
            if len(read) > 1:
                self._chain_read(value, read, f"{prefix}g:", parts, whole)

    def _chain_read(self, value: Any, read: tuple[str, ...], label: str, parts: list[str], whole: str) -> None:
        """``Config.ROWS``, ``settings.THRESHOLD``, ``self.FACTOR``: the value at the end of an
        attribute chain. A module or class is keyed by its name and an object by its own state, so
        what is read through them (module data, class attributes) is keyed here; and so is an
        object's own attribute when the object itself could only be keyed by its type (``whole``)."""
        value = _chain_value(value, read[1:], own_state=whole.startswith("type:"))
        if value is not _OWN_STATE:
            parts.append(f"{label}{'.'.join(read)}={self._read_value(value, '', quiet=True)}")

    def _read_value(self, value: Any, where: str, quiet: bool = False, seen: frozenset[int] = frozenset()) -> str:
        """A value the code reads: code by its qualified name, data by its fingerprint.

        A global that cannot be fingerprinted (a client, a lock, a connection) is
        keyed by its type, with one warning: such objects are resources, not the
        data a result depends on, and refusing to cache every step that logs
        through one would make the cache useless. ``quiet`` (an attribute read
        through a module or class, such as ``sys.stdout``) keys it the same way
        without the warning: the module or class holding it is in the key by name.

        A lambda or a function made inside another function (``SCALE = lambda x: x * 2``,
        ``SCALER = make_scaler(10)``) has no name of its own that tells two apart:
        it is keyed by its code and what it reads, as the step's own function is.
        """
        if value is _MISSING:
            return "<missing>"
        if isinstance(value, types.ModuleType):
            return "module:" + module_identity(value)
        if isinstance(value, Step):  # a step called as a helper: by name, as a function is
            if "<" not in getattr(value._target, "__qualname__", ""):
                return "step:" + qualified_name(value._target)
            return "step:" + self._read_value(value._target, where, quiet, seen) + f"|version={value.version!r}"
        if isinstance(value, types.FunctionType) and "<" in value.__qualname__:  # <lambda>, <locals>
            if id(value) in seen:  # a local function that calls itself
                return "recursion"
            inner: list[str] = []
            self._function_reads(value, _data_reads(value), "", f" of {where}", inner, seen | {id(value)}, quiet)
            return "fn:" + combine(code_fingerprint(value), *inner)
        if isinstance(value, type) or inspect.isroutine(value):
            owner = getattr(value, "__self__", None)
            name = "code:" + qualified_name(value)
            if owner is None or isinstance(owner, (type, types.ModuleType)):
                return name
            return combine(name, self._read_value(owner, f"{where} (the object its method is bound to)"))
        logging = sys.modules.get("logging")  # not imported for this: a step that logs has imported it
        if logging is not None and isinstance(value, logging.Logger):
            # A logger is where output goes, found by its name; fingerprinting its state (handlers,
            # level) through pickle cost ~40 µs on every key of every step that logs.
            return "logger:" + value.name
        if quiet:
            known = _UNKEYABLE.get(id(value))
            if known is not None and known[0] is value:
                return known[1]
        try:
            return fingerprint(value)
        except UnfingerprintableError as exc:
            if quiet:
                # Such objects (os.environ, sys.stdout) are module singletons, read on every key of a
                # step that reads them; failing to fingerprint one again each time cost ~100 µs.
                if len(_UNKEYABLE) >= _MAX_UNKEYABLE:
                    _UNKEYABLE.clear()
                _UNKEYABLE[id(value)] = (value, "type:" + exc.type_name)
                return "type:" + exc.type_name
            warn_once(
                (self.name, where, exc.type_name),
                "step %r: %s is a %s, which cannot be fingerprinted (%s); the cache key covers its type, and the "
                "attributes the step reads from it by name (x.rows), only. "
                "If what it holds changes the step's result, pass it as a parameter or bump the step's version=",
                self.name, where, exc.type_name, exc.reason,
            )
            return "type:" + exc.type_name


#: Globals every module has, set by the import system: the module identity in the code hash
#: already says which module it is, and ``__file__`` is an absolute path (another one in a
#: container), ``__name__`` is ``__main__`` in a script and the file's stem elsewhere.
_MODULE_MACHINERY = frozenset(
    {"__file__", "__name__", "__spec__", "__loader__", "__package__", "__path__", "__cached__", "__builtins__"}
)


def _data_reads(function: types.FunctionType) -> tuple[tuple[str, ...], ...]:
    """The global reads of ``function`` (with their attribute chains) that the key covers."""
    return tuple(read for read in global_reads(function.__code__) if read[0] not in _MODULE_MACHINERY)


#: Objects read through a module or class that could not be fingerprinted, by id (each kept, so
#: that its id is not reused): they are keyed by type, and trying again on every key is the cost.
_UNKEYABLE: dict[int, tuple[Any, str]] = {}
_MAX_UNKEYABLE = 1024

_MISSING = object()  # an attribute a step reads that is not there when the key is computed
_OWN_STATE = object()  # an attribute of an object's own state: in the key with the object


def _chain_value(value: Any, attributes: tuple[str, ...], own_state: bool = False) -> Any:
    """What ``value.a.b`` reads, without running an object's code.

    Through a module or a class, ``getattr``. On another object, an attribute in
    its ``__dict__`` is its own state (fingerprinted with it: ``_OWN_STATE``,
    unless ``own_state`` asks for its value); any other is looked up on its
    class (``self.FACTOR``), where a property is the property object, not a call.
    """
    for attribute in attributes:
        try:
            if isinstance(value, (type, types.ModuleType)):
                value = getattr(value, attribute)
            else:
                own = getattr(value, "__dict__", None)
                if isinstance(own, dict) and attribute in own:
                    if not own_state:
                        return _OWN_STATE
                    value = own[attribute]
                else:
                    value = getattr(type(value), attribute)
        except Exception:  # not there (yet), or a lazy attribute that failed: running the step says so
            return _MISSING
        if not isinstance(value, (type, types.ModuleType)):
            return value  # the data read (``cfg.name`` of ``cfg.name.upper()``), not a method of it
    return value


#: How many functions of its own a step may bring into its key (decorator layers, functions in
#: closure cells): a bound on a walk that could otherwise wander into a library.
_MAX_PARTS = 32


def _resolve(func: Callable[..., Any]) -> tuple[Any, tuple[tuple[str, Any], ...], list[types.FunctionType]]:
    """The Python function whose code runs, the values bound to it outside that code, and the wrappers.

    A ``functools.partial`` binds arguments, a bound method binds ``self``, a
    callable object is its class's ``__call__`` bound to the object: each bound
    value is read like a closure variable when a key is computed. The functions
    a decorator put around the step (``functools.wraps`` layers) are returned
    too: their code and what they read (``@scale(K)``) change the result.
    """
    bound: list[tuple[str, Any]] = []
    layers: list[types.FunctionType] = []
    target: Any = func
    while True:
        seen = 0
        while hasattr(target, "__wrapped__") and seen < _MAX_PARTS:  # inspect.unwrap, keeping the layers
            if isinstance(target, types.FunctionType):
                layers.append(target)
            target = target.__wrapped__
            seen += 1
        if isinstance(target, functools.partial):
            bound.append(("partial", (target.args, target.keywords)))
            target = target.func
        elif isinstance(target, types.MethodType):
            bound.append(("self", target.__self__))
            target = target.__func__
        else:
            break
    if not (isinstance(target, type) or inspect.isroutine(target)):
        call = getattr(type(target), "__call__", None)
        if isinstance(call, types.FunctionType):
            bound.append(("self", target))
            target = call
    return target, tuple(bound), layers


def _parts_of(target: Any, layers: list[types.FunctionType]) -> tuple[types.FunctionType, ...]:
    """The Python functions whose code is this step's: the target, its decorators' wrappers, and
    the functions held in their closure cells, recursively (a decorator without ``functools.wraps``
    holds the decorated function only there; a helper defined in the enclosing function too).

    Functions reached through globals are not: they are helpers, keyed by name (``version=``).
    """
    found: list[types.FunctionType] = []
    pending: list[Any] = [target, *layers]
    while pending and len(found) < _MAX_PARTS:
        function = pending.pop(0)
        if not isinstance(function, types.FunctionType) or any(function is f for f in found):
            continue
        found.append(function)
        for cell in function.__closure__ or ():
            try:
                pending.append(cell.cell_contents)
            except ValueError:  # a cell not assigned yet
                continue
    return tuple(found)


def _step_by_reference(module_name: str, qualname: str, code_hash: str | None = None) -> Step:
    """Unpickle a Step sent by reference: import its module, look it up, check it is the code that was keyed."""
    import importlib

    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if code_hash is not None and isinstance(obj, Step) and obj._code_hash != code_hash:
        raise_code_changed(obj.name, obj.func)
    return obj


def check_code_unchanged(func: Callable[..., Any], digest: str, step_name: str) -> None:
    """Refuse to run ``func`` (just imported from disk) if its code is not the one whose digest is given.

    For a process that receives a step's function by reference (``isolation =
    "process"``): the digest is :func:`~flowyml_core.fingerprint.code_fingerprint`
    of the function as the run's own process imported it, and the cache key was
    computed from that code.
    """
    if code_fingerprint(inspect.unwrap(func)) != digest:
        raise_code_changed(step_name, func)


def raise_code_changed(step_name: str, func: Any) -> None:
    raise DefinitionError(
        f"step {step_name!r}{defined_at(func)}: the file changed on disk after this run imported it; the new "
        "code would run under the cache key of the old one, so the step is not run. Run the pipeline again"
    )


def step(
    func: Callable[..., Any] | None = None,
    *,
    inputs: str | Iterable[str] | None = None,
    outputs: str | Iterable[str] | None = None,
    cache: bool = True,
    retry: int = 0,
    retry_delay: float = 1.0,
    timeout: float | None = None,
    condition: Callable[..., Any] | None = None,
    resources: ResourceConfig | None = None,
    execution_group: str | None = None,
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
    version: str | int | None = None,
) -> Any:
    """Make a :class:`Step`: ``@step`` or ``@step(inputs=[...], outputs=[...])``.

    ``version`` enters the cache key: bump it when something the key cannot
    see changes the result, such as a helper function the step calls (the key
    covers the step's own source, not the code of what it calls).
    """

    def wrap(f: Callable[..., Any]) -> Step:
        return Step(
            func=f,
            name=name,
            inputs=inputs,
            outputs=outputs,
            cache=cache,
            retry=retry,
            retry_delay=retry_delay,
            timeout=timeout,
            condition=condition,
            resources=resources,
            execution_group=execution_group,
            tags={} if tags is None else dict(tags) if isinstance(tags, Mapping) else tags,
            version=version,
        )

    return wrap(func) if func is not None else wrap
