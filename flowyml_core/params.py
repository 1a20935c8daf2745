"""Run parameters given on the command line (``--param NAME=VALUE``), checked before anything runs.

A misspelt name used to be passed along and ignored by every step, so the run
"succeeded" (fully cached) with the value the person meant to change left
as it was; a value of the wrong type failed deep inside a step, after the
steps before it had run. Here a name must be one some step (or condition, or
the pipeline's own context) takes, and a value is converted to the type that
parameter declares: its annotation, else its default's type, else the type
of the value in the pipeline's context.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from typing import Any, Callable, Sequence

from flowyml_core.errors import FlowymlError

_NO_TYPE = object()


class Declared:
    """One parameter as the pipeline declares it: who takes it and what type it wants."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.takers: list[str] = []  # step names (or "the pipeline's context")
        self.kind: Any = _NO_TYPE
        self.kind_from = ""

    def offer(self, taker: str, kind: Any, why: str) -> None:
        self.takers.append(taker)
        if self.kind is _NO_TYPE and kind is not _NO_TYPE:
            self.kind, self.kind_from = kind, f"{why} of {taker}"


def parse_param_items(items: Sequence[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` → ``{"a": "1", "b": "x"}`` (raw text; :func:`check_params` converts)."""
    params: dict[str, str] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise FlowymlError(f"--param {item!r} is not NAME=VALUE (e.g. --param epochs=10)")
        params[key.strip()] = raw.strip()
    return params


def declared_params(pipeline: Any) -> tuple[dict[str, Declared], bool]:
    """The run parameters ``pipeline`` takes, and whether some step takes any (``**kwargs``)."""
    assets = {a for s in pipeline.steps for a in (*s.outputs, *s.inputs)}
    found: dict[str, Declared] = {}
    open_ended = False

    def note(name: str, taker: str, kind: Any, why: str) -> None:
        found.setdefault(name, Declared(name)).offer(taker, kind, why)

    for step in pipeline.steps:
        open_ended = open_ended or step.accepts_any_kwargs
        bound = _bound_to_inputs(step)
        for name, kind, why in _parameters(step.func):
            if name not in bound and name not in assets:
                note(name, f"step {step.name!r}", kind, why)
        if step.condition is not None:
            open_ended = open_ended or _takes_any(step.condition)
            for name, kind, why in _parameters(step.condition):
                if name not in assets:
                    note(name, f"the condition of step {step.name!r}", kind, why)
    for name, value in pipeline.context.params.items():
        note(name, "the pipeline's context", type(value) if value is not None else _NO_TYPE, "the value")
    return found, open_ended


def check_params(pipeline: Any, raw: dict[str, str]) -> dict[str, Any]:
    """Convert ``--param`` values for ``pipeline``; unknown names and unconvertible values are errors."""
    if not raw:
        return {}
    declared, open_ended = declared_params(pipeline)
    unknown = sorted(set(raw) - set(declared))
    if unknown and not open_ended:
        raise FlowymlError(_unknown_message(pipeline, unknown, declared))
    values: dict[str, Any] = {}
    problems = []
    for name, text in raw.items():
        entry = declared.get(name)
        kind = entry.kind if entry is not None else _NO_TYPE
        try:
            values[name] = convert(text, kind)
        except ValueError as exc:
            assert entry is not None
            problems.append(f"--param {name}={text}: {exc} ({_type_name(kind)}, from the {entry.kind_from})")
    if problems:
        raise FlowymlError("; ".join(problems))
    return values


def _unknown_message(pipeline: Any, unknown: list[str], declared: dict[str, Declared]) -> str:
    names = ", ".join(sorted(declared)) or "none"
    assets = {a for s in pipeline.steps for a in (*s.outputs, *s.inputs)}
    messages = [_asset_message(pipeline, name) for name in unknown if name in assets]
    unknown = [name for name in unknown if name not in assets]
    if not unknown:
        messages[-1] += f" (its parameters: {names})"
    else:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, list(declared), n=1)
            if close:
                hints.append(f"did you mean {close[0]!r} for {name!r}?")
        which = " ".join(f"--param {n}" for n in unknown)
        messages.insert(0, (
            f"{which}: pipeline {pipeline.name!r} takes no parameter{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(n) for n in unknown)} (its parameters: {names})"
            + (f"; {' '.join(hints)}" if hints else "")
        ))
    return "; ".join(messages)


def _asset_message(pipeline: Any, name: str) -> str:
    """Why ``--param NAME`` cannot set an argument that is named like an asset, and how to make it settable.

    A parameter named like an asset receives the asset (``bind_inputs`` maps
    assets onto parameters by name), so a run parameter of that name would
    never reach it: the person reading only the step's signature cannot see that.
    """
    producers = [s.name for s in pipeline.steps if name in s.outputs]
    receivers = [s.name for s in pipeline.steps
                 if name not in s.outputs and (name in s.param_names or name in s.inputs)]
    made = (f"produced by {_steps(producers)}" if producers
            else f"declared as an input of {_steps([s.name for s in pipeline.steps if name in s.inputs])}")
    takes = f" and passed to {_steps(receivers)} by name" if receivers else ""
    fix = (f"rename the argument of {_steps(receivers)} or the output of {_steps(producers)}"
           if receivers and producers else "rename the argument or the asset")
    return (
        f"--param {name}: pipeline {pipeline.name!r} has an asset {name!r} ({made}{takes}), so {name!r} is not a "
        f"parameter; to set it with --param, {fix} so that the two names differ"
    )


def _steps(names: list[str]) -> str:
    return f"step{'s' if len(names) > 1 else ''} {', '.join(repr(n) for n in names)}"


def _parameters(func: Callable[..., Any]) -> list[tuple[str, Any, str]]:
    """(name, declared type, where the type comes from) for each named parameter of ``func``."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return []
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # an annotation that does not evaluate: fall back to defaults
        hints = {}
    out = []
    for p in signature.parameters.values():
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) or p.name in ("self", "cls"):
            continue
        if p.name in hints:
            out.append((p.name, hints[p.name], "annotation"))
        elif p.default is not p.empty and p.default is not None:
            out.append((p.name, type(p.default), "default"))
        else:
            out.append((p.name, _NO_TYPE, ""))
    return out


def _takes_any(func: Callable[..., Any]) -> bool:
    try:
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return True


def _bound_to_inputs(step: Any) -> set[str]:
    """Parameters that receive the step's inputs (by name, else by position), as ``bind_inputs`` does."""
    params = step.param_names
    bound: set[str] = set()
    for i, asset in enumerate(step.inputs):
        if asset in params or step.accepts_any_kwargs:
            bound.add(asset)
        elif i < len(params) and params[i] not in bound:
            bound.add(params[i])
    return bound


# -- conversion ---------------------------------------------------------------------
def convert(text: str, kind: Any) -> Any:
    """``text`` as a value of ``kind``; ValueError says why it is not one.

    Without a declared type the text is read as a TOML literal (``3``,
    ``0.5``, ``true``, ``[1, 2]``, ``"quoted"``), else kept as a string.
    """
    if kind is _NO_TYPE or kind is Any or kind is inspect.Parameter.empty:
        return _literal(text)
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin is typing.Union or _is_union_type(kind):
        options = [a for a in args if a is not type(None)]
        if type(None) in args and text.lower() in ("none", "null"):
            return None
        errors = []
        for option in options:
            try:
                return convert(text, option)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(" and ".join(errors) or f"{text!r} is not valid")
    if kind is bool:
        from flowyml_core.structuring import FALSE_WORDS, TRUE_WORDS  # the words stacks.toml accepts for booleans

        if text.lower() in TRUE_WORDS | FALSE_WORDS:
            return text.lower() in TRUE_WORDS
        raise ValueError(f"{text!r} is not true or false")
    if kind is int:
        try:
            return int(text.replace("_", ""))
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if kind is str:
        return text
    container = origin or kind
    if container in (list, tuple, set, frozenset):
        value = _literal(text)
        if not isinstance(value, list):
            raise ValueError(f"{text!r} is not a list (write it as [1, 2, 3])")
        item = args[0] if args and (container is not tuple or args[1:] == (Ellipsis,)) else _NO_TYPE
        if item is not _NO_TYPE:
            value = [convert(_text(v), item) for v in value]
        return container(value)
    if origin is dict or kind is dict:
        value = _literal(text)
        if not isinstance(value, dict):
            raise ValueError(f"{text!r} is not a table (write it as {{ a = 1 }})")
        return value
    return _literal(text)


def _text(value: Any) -> str:
    """A parsed list item back to the text ``convert`` reads (strings as they are)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _is_union_type(kind: Any) -> bool:
    import types

    return isinstance(kind, getattr(types, "UnionType", ()))


def _type_name(kind: Any) -> str:
    if isinstance(kind, type):
        return f"declared as {kind.__name__}"
    return f"declared as {kind}".replace("typing.", "")


def _literal(text: str) -> Any:
    from flowyml_core.stack_edit import _literal as toml_literal

    return toml_literal(text)

