"""What ``@step`` refuses (or warns about) when a step is defined, instead of failing when it runs.

Kept apart from :mod:`flowyml_core.step`: these checks are about what a
person wrote, in messages that name the step and where it is written; the
step module is about what a step is and how its cache key is made.
"""

from __future__ import annotations

import inspect
import types
from typing import TYPE_CHECKING, Any, Mapping

import attrs

from flowyml_core.errors import DefinitionError

if TYPE_CHECKING:  # pragma: no cover
    from flowyml_core.step import Step


def check_definition(s: Step) -> None:
    """Refuse, when the step is defined, what would fail or be silently dropped when it runs.

    A ``retry="2"`` used to surface as ``'<' not supported`` deep in a run, and
    duplicate output names or an input with no parameter to receive it lost
    data without a word. All problems of one step are reported at once, in one
    line that names the step and where its function is defined. The checks
    test the common types first: a pipeline file may define hundreds of steps.
    """
    problems: list[str] = []
    name, inputs, outputs, cache, retry = s.name, s.inputs, s.outputs, s.cache, s.retry
    if not isinstance(name, str) or not name.strip():
        problems.append(f"name must be a non-empty string, got {name!r}")
    if inputs:
        problems += _name_problems("inputs", inputs)
    if outputs:
        problems += _name_problems("outputs", outputs)
    if cache is not True and cache is not False:
        problems.append(f"cache must be True or False, got {cache!r} ({a_type(cache)})")
    if type(retry) is not int and (isinstance(retry, bool) or not isinstance(retry, int)) or retry < 0:
        problems.append(f"retry must be a whole number >= 0 (the extra attempts), got {retry!r} ({a_type(retry)})")
    if not _seconds(s.retry_delay):
        problems.append(f"retry_delay must be a number of seconds >= 0, got {s.retry_delay!r} ({a_type(s.retry_delay)})")
    if s.timeout is not None and not _seconds(s.timeout):
        problems.append(f"timeout must be None or a number of seconds >= 0, got {s.timeout!r} ({a_type(s.timeout)})")
    if s.condition is not None and not callable(s.condition):
        problems.append(
            f"condition must be a function of the parameters and assets it names (e.g. lambda deploy: deploy) "
            f"or None, got {s.condition!r} ({a_type(s.condition)})"
        )
    group = s.execution_group
    if group is not None and (not isinstance(group, str) or not group):
        problems.append(f"execution_group must be a non-empty string or None, got {group!r}")
    tags = s.tags
    if not isinstance(tags, dict) or tags and not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        problems.append(f"tags must be a dict of strings (e.g. {{'team': 'ml'}}), got {tags!r}")
    version = s.version
    if version is not None and type(version) is not str and (isinstance(version, bool) or not isinstance(version, int)):
        problems.append(f"version must be a string, an int or None, got {version!r} ({a_type(version)})")
    if s.resources is not None:
        problems += _resource_problems(s)
    if not problems and inputs and not s.accepts_any_kwargs:
        _warn_unreceived_inputs(s)
    if problems:
        label = repr(name) if isinstance(name, str) and name.strip() else f"of function {func_name(s.func)!r}"
        raise DefinitionError(f"step {label}{defined_at(s.func)}: " + "; ".join(problems))


def _resource_problems(s: Step) -> list[str]:
    """Check ``resources``; a dict of its fields becomes the :class:`ResourceConfig` it describes.

    Every executor (and the grouping, which merges a group's resources) then
    reads one type; a dict used to reach only the docker executor intact and
    broke a group's merge elsewhere. A bad field is refused here, like in
    ``ResourceConfig(...)``.
    """
    from flowyml_core.resources import ResourceConfig

    value = s.resources
    if isinstance(value, ResourceConfig):
        return []
    if not isinstance(value, Mapping):
        return [f"resources must be a ResourceConfig(...), a dict of its fields or None, got {value!r}"]
    fields = attrs.fields_dict(ResourceConfig)
    unknown = [str(k) for k in value if k not in fields]
    if unknown:
        many = len(unknown) > 1
        return [f"resources field{'s' if many else ''} {', '.join(map(repr, unknown))} {'are' if many else 'is'} "
                f"unknown (fields: {', '.join(fields)})"]
    try:
        s.resources = ResourceConfig(**value)
    except (TypeError, ValueError) as exc:
        return [f"resources: {exc}"]
    return []


def _name_problems(field: str, names: tuple[Any, ...]) -> list[str]:
    for n in names:
        if type(n) is not str or not n:
            break
    else:
        if len(set(names)) == len(names):
            return []  # the common case, decided without building anything
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        return [f"{field} must be asset names (non-empty strings), got {', '.join(f'{n!r} ({a_type(n)})' for n in bad)}"]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        return [
            f"{field} {list(names)} name {', '.join(map(repr, twice))} more than once; "
            f"each of a step's {field} needs its own name"
        ]
    return []


def _warn_unreceived_inputs(s: Step) -> None:
    """Warn about inputs neither the function nor its condition receives, binding as ``bind_inputs`` does.

    An input goes to the parameter of its name, else to the parameter at its
    position if that one is still free; a later input bound by name takes a
    parameter from an earlier one bound by position. The executor passes
    arguments by keyword only, so ``*args`` receives nothing; ``**kwargs`` receives all.
    Such an input is not an error: the seed drops it, a condition may be what
    reads it, and it still orders the step after its producer. But dropping
    it without a word hid typos, so it is said once, when the step is defined.
    """
    params = s.param_names
    holder: dict[str, str] = {}  # parameter -> input it receives
    lost: list[str] = []
    for i, asset in enumerate(s.inputs):
        if asset in params:
            previous = holder.get(asset)
            if previous is not None:
                lost.append(previous)
            holder[asset] = asset
        elif i < len(params) and params[i] not in holder:
            holder[params[i]] = asset
        else:
            lost.append(asset)
    if lost and s.condition is not None:
        from flowyml_core.step import signature_names

        condition_params, condition_takes_any = signature_names(s.condition)
        lost = [] if condition_takes_any else [a for a in lost if a not in condition_params]
    if not lost:
        return
    import logging

    lost = [a for a in s.inputs if a in lost]
    takes = f"its parameters: {', '.join(params)}" if params else "it takes no named parameters"
    func = func_name(s.func)
    these = f"inputs {', '.join(map(repr, lost))} reach" if len(lost) > 1 else f"input {lost[0]!r} reaches"
    logging.getLogger("flowyml.step").warning(
        "step %r%s: %s no parameter of %s() (%s)%s: not passed, only waited for. An input goes to the parameter "
        "of its name, else to the one at its position; if %s() needs the value, add a parameter (or **kwargs)",
        s.name, defined_at(s.func), these, func, takes, " nor its condition" if s.condition is not None else "",
        func,
    )


def _seconds(value: Any) -> bool:
    """A duration: an int or float >= 0 (not a bool, not NaN)."""
    kind = type(value)
    if kind is not float and kind is not int and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return False
    return value >= 0


def a_type(value: Any) -> str:
    """``a str``, ``an int``: the type of a refused value, for messages."""
    name = type(value).__name__
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def func_name(func: Any) -> str:
    return getattr(func, "__name__", None) or type(func).__name__


def defined_at(func: Any) -> str:
    """`` (pipe.py:12)`` where the function is written, when Python knows it."""
    code = getattr(inspect.unwrap(func), "__code__", None)
    if not isinstance(code, types.CodeType):
        return ""
    return f" ({code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno})"
