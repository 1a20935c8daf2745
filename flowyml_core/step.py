"""Steps: user functions with their wiring and run policy."""

from __future__ import annotations

import functools
import inspect
import sys
from typing import Any, Callable, Iterable, Mapping

import attrs

from flowyml_core.fingerprint import code_fingerprint, combine, fingerprint
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
    return tuple(value)


def _non_negative(_inst: Any, attribute: attrs.Attribute, value: float | int | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.define(eq=False, repr=False, slots=False)
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
    retry: int = attrs.field(default=0, validator=_non_negative)
    retry_delay: float = attrs.field(default=1.0, validator=_non_negative)
    timeout: float | None = attrs.field(default=None, validator=_non_negative)
    condition: Callable[..., Any] | None = None
    resources: ResourceConfig | None = None
    execution_group: str | None = None
    tags: dict[str, str] = attrs.field(factory=dict)
    param_names: tuple[str, ...] = attrs.field(init=False)
    accepts_any_kwargs: bool = attrs.field(init=False)
    _code_hash: str | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        if not callable(self.func):
            raise TypeError(f"a step wraps a callable, got {self.func!r}")
        if self.name is None:
            self.name = getattr(self.func, "__name__", "step")
        self.param_names, self.accepts_any_kwargs = signature_names(self.func)
        functools.update_wrapper(self, self.func, updated=())

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
        """
        reference = self._reference()
        if reference is not None:
            return (_step_by_reference, reference)
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
        if self._code_hash is None:
            self._code_hash = code_fingerprint(self.func)
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
        """Key over this step's code, its input values and the parameters it receives.

        ``context_params`` may hold every parameter of the run; those the
        function does not accept are left out of the key.

        ``input_fingerprints`` supplies digests already computed when the inputs
        were produced; any input without one is hashed here.
        """
        known = input_fingerprints or {}
        parts = [self.name, self.get_code_hash()]
        for key in sorted(inputs):
            parts.append(f"i:{key}={known.get(key) or fingerprint(inputs[key])}")
        # Only the parameters the function receives: a run-wide parameter the
        # step does not take cannot change its result, so it must not be a miss.
        received = self.filter_kwargs(context_params or {})
        for key in sorted(received):
            parts.append(f"p:{key}={fingerprint(received[key])}")
        return combine(*parts)


def _step_by_reference(module_name: str, qualname: str) -> Step:
    """Unpickle a Step sent by reference: import its module and look it up."""
    import importlib

    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


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
) -> Any:
    """Make a :class:`Step`: ``@step`` or ``@step(inputs=[...], outputs=[...])``."""

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
            tags=dict(tags or {}),
        )

    return wrap(func) if func is not None else wrap
