"""Options from ``stacks.toml`` into a flavor's attrs config class, strictly.

cattrs does the structuring; the hooks here make it refuse what its
defaults would coerce (see :func:`_converter`), and every problem becomes
one line naming the option (:func:`flowyml_core.config.describe_structure_error`).
"""

from __future__ import annotations

from typing import Any

from flowyml_core.config import (
    describe_structure_error,
    has_env_ref,
    scrub,
    secret_field_names,
    spec_field_problems,
)


def structure_config(
    config_cls: type | None, options: dict[str, Any], where: str, secret_paths: set[str], problems: list[str]
) -> Any:
    """Options → the flavor's attrs config; unknown keys refused."""
    if config_cls is None:
        if options:
            problems.append(f"{where}: this flavor takes no options, got {', '.join(sorted(options))}")
        return None
    converter = _converter()
    try:
        return converter.structure(options, config_cls)
    except Exception as exc:  # cattrs raises grouped errors; each becomes one line
        problems.extend(describe_structure_error(exc, where, secret_paths))
        return None


def written_option_problems(config_cls: type | None, options: dict[str, Any], where: str) -> list[str]:
    """The problems of options as written, found without reading any ``${env:…}`` value.

    ``flowyml stack add`` and ``stack show`` check a stack whose variables
    may not be set here (they are set where it runs), and must never read or
    print a secret. So a referenced option is not structured, but its name
    still is: an unknown one is refused, whatever its value (it was let
    through when its value was a reference), and a required one stands in as
    "" (every required option is a string). A reference in an option that goes
    into a job spec is refused as when the stack is resolved. Messages are
    worded as ``flowyml stack validate`` words them and hide the values of
    secret fields.
    """
    import attrs

    problems = spec_field_problems(options, config_cls, where)
    referenced = {k for k, v in options.items() if has_env_ref(v)}
    fields = {f.name: f for f in attrs.fields(config_cls)} if config_cls is not None and attrs.has(config_cls) else {}
    plain: dict[str, Any] = {}
    for key, value in options.items():
        if key not in referenced or key not in fields:
            plain[key] = value  # an unknown option's value is never structured: its name is what is refused
        elif fields[key].default is attrs.NOTHING:
            plain[key] = ""
    secret_names = secret_field_names(config_cls)
    structure_config(config_cls, plain, where, referenced | secret_names, problems)
    literal_secrets = [v for k, v in options.items() if k in secret_names and isinstance(v, str) and k not in referenced]
    return [scrub(p, literal_secrets) for p in problems]


_CONVERTER: Any = None


def _converter() -> Any:
    """A cattrs converter that refuses wrong types instead of coercing them.

    cattrs' defaults call ``str(v)``, ``int(v)``, ``bool(v)`` and ``list(v)``:
    ``path = ["p"]`` became the string "['p']", ``workers = 1.5`` became 1,
    ``verbose = "false"`` became True and ``tags = "abc"`` became
    ["a", "b", "c"]. Strings are still accepted for numbers and booleans when
    they spell one, because ``${env:NAME}`` values are always strings.
    """
    global _CONVERTER
    if _CONVERTER is None:
        import cattrs

        base = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
        converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
        for conv in (base, converter):
            conv.register_structure_hook(str, _strict_str)
            conv.register_structure_hook(int, _strict_int)
            conv.register_structure_hook(float, _strict_float)
            conv.register_structure_hook(bool, _strict_bool)

        def collection(value: Any, cls: Any) -> Any:
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"expected a list, got {_kind(value)}")
            return base.structure(value, cls)

        converter.register_structure_hook_func(_is_collection, collection)
        _CONVERTER = converter
    return _CONVERTER


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    label = names.get(type(value), type(value).__name__)
    return f"{label} ({value!r})" if isinstance(value, (bool, int, float)) else label


def _is_collection(cls: Any) -> bool:
    import collections.abc
    import typing

    origin = typing.get_origin(cls) or cls
    return origin in (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.MutableSequence,
                      collections.abc.Set, collections.abc.MutableSet)


def _strict_str(value: Any, _cls: Any) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a string, got {_kind(value)}")


def _strict_int(value: Any, _cls: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got the string {value!r}") from None
    raise TypeError(f"expected an integer, got {_kind(value)}")


def _strict_float(value: Any, _cls: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise ValueError(f"expected a number, got the string {value!r}") from None
    raise TypeError(f"expected a number, got {_kind(value)}")


TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "0"})


def _strict_bool(value: Any, _cls: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise TypeError(f"expected true or false, got {_kind(value) if not isinstance(value, str) else repr(value)}")
