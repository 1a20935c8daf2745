"""Helpers for component config classes (attrs) and secret values.

Values written ``"${env:NAME}"`` in ``stacks.toml`` are read from the
environment when a stack is resolved. They are secrets by construction: they are
masked when shown, left out of reprs and error messages, and the reference (not
the value) is what is ever written back.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from flowyml_core.errors import ConfigError

ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
MASK = "****"


def secret_field(**kwargs: Any) -> Any:
    """An attrs field that holds a secret: hidden from repr, masked in ``stack show``."""
    import attrs

    metadata = dict(kwargs.pop("metadata", {}) or {})
    metadata["secret"] = True
    kwargs.setdefault("default", None)
    return attrs.field(repr=False, metadata=metadata, **kwargs)


def spec_field(**kwargs: Any) -> Any:
    """An attrs field whose value a remote executor writes into a job or container spec.

    Anyone who can view the job can read such a spec, so a ``${env:NAME}``
    reference there would publish the secret: resolving a stack refuses it
    (see :func:`spec_field_problems`). Plain values are fine.
    """
    import attrs

    metadata = dict(kwargs.pop("metadata", {}) or {})
    metadata["in_job_spec"] = True
    return attrs.field(metadata=metadata, **kwargs)


def spec_field_names(config_cls: type | None) -> set[str]:
    """Fields of an attrs config declared with :func:`spec_field`."""
    if config_cls is None:
        return set()
    import attrs

    if not attrs.has(config_cls):
        return set()
    return {f.name for f in attrs.fields(config_cls) if f.metadata.get("in_job_spec")}


def spec_field_problems(options: Mapping[str, Any], config_cls: type | None, where: str) -> list[str]:
    """One problem per ``${env:…}`` reference written in a :func:`spec_field` option."""
    problems = []
    for name in sorted(spec_field_names(config_cls)):
        value = options.get(name)
        if isinstance(value, Mapping):
            refs = [(f"{name}.{key}", item) for key, item in value.items() if has_env_ref(item)]
        elif isinstance(value, (list, tuple)):
            refs = [(f"{name}[{i}]", item) for i, item in enumerate(value) if has_env_ref(item)]
        else:
            refs = [(name, value)] if has_env_ref(value) else []
        for path, item in refs:
            variables = ", ".join(ENV_REF.findall(item if isinstance(item, str) else str(item)))
            problems.append(
                f"{where}: option {path!r} takes its value from the secret {variables} (${{env:…}}), but this "
                "option is written into the job spec, where anyone who can view the job reads it in clear; "
                "give the container a secret manager reference instead, or read the secret inside the step"
            )
    return problems


def has_env_ref(value: Any) -> bool:
    if isinstance(value, str):
        return ENV_REF.search(value) is not None
    if isinstance(value, Mapping):
        return any(has_env_ref(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_env_ref(v) for v in value)
    return False


def resolve_env_refs(value: Any, environ: Mapping[str, str], where: str, problems: list[str]) -> Any:
    """Replace ``${env:NAME}`` references; a missing variable is a problem naming it."""
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                problems.append(f"{where}: environment variable {name} is not set (referenced as ${{env:{name}}})")
                return ""
            return environ[name]

        return ENV_REF.sub(substitute, value)
    if isinstance(value, Mapping):
        return {k: resolve_env_refs(v, environ, f"{where}.{k}", problems) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env_refs(v, environ, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    return value


def referenced_env_values(value: Any, environ: Mapping[str, str]) -> list[str]:
    """The values of the environment variables ``value`` refers to (to scrub them from messages)."""
    if isinstance(value, str):
        return [environ[name] for name in ENV_REF.findall(value) if environ.get(name)]
    if isinstance(value, Mapping):
        return [v for item in value.values() for v in referenced_env_values(item, environ)]
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in referenced_env_values(item, environ)]
    return []


def secret_field_names(config_cls: type | None) -> set[str]:
    """Fields of an attrs config declared with :func:`secret_field`."""
    if config_cls is None:
        return set()
    import attrs

    if not attrs.has(config_cls):
        return set()
    return {f.name for f in attrs.fields(config_cls) if f.metadata.get("secret")}


#: Option names that look like secrets, masked when no config class says which fields are secret.
SECRET_WORDS = ("token", "key", "secret", "password", "passwd", "credential")


def looks_secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def mask_options(options: Mapping[str, Any], config_cls: type | None = None) -> dict[str, Any]:
    """Options fit to show: env references kept as written, secret fields masked.

    Only the config class can say which of its fields are secret. Options it
    does not declare (a typo, an option of another flavor, or every option
    when the plugin is disabled, missing or broken) have no declaration to go
    by, so they are masked by name instead (``token``, ``signing_key``,
    ``password``...), in nested tables too: such an option is refused when
    the stack is used, but showing it must not print the secret written there.
    A declared table (``env_vars = { WANDB_API_KEY = "…" }``) is masked by the
    names of its keys as well.
    """
    import attrs

    if config_cls is None or not attrs.has(config_cls):
        return _mask_by_name(options)
    fields = attrs.fields(config_cls)
    declared = {f.name for f in fields}
    secret_names = {f.name for f in fields if f.metadata.get("secret")}
    shown: dict[str, Any] = {}
    for key, value in options.items():
        if key not in declared:
            shown.update(_mask_by_name({key: value}))
        elif key in secret_names and value not in (None, "") and not has_env_ref(value):
            shown[key] = MASK
        elif isinstance(value, Mapping):  # a table of names (env_vars, labels): its secret-looking keys are masked
            shown[key] = _mask_by_name(value)
        else:
            shown[key] = value
    return shown


def _mask_by_name(options: Mapping[str, Any], inherited: bool = False) -> dict[str, Any]:
    """Mask values under secret-looking keys; a table under such a key is masked throughout."""
    shown: dict[str, Any] = {}
    for key, value in options.items():
        secret = inherited or looks_secret(str(key))
        if isinstance(value, Mapping):
            shown[key] = _mask_by_name(value, secret)
        elif secret and value not in (None, "") and not (isinstance(value, str) and has_env_ref(value)):
            shown[key] = MASK
        else:
            shown[key] = value
    return shown


def scrub(message: str, secrets: list[str]) -> str:
    """Remove secret values from a message (they may be echoed by a library).

    Also in the escaped forms ``repr()`` and JSON give them (a backslash or a
    quote in a token is doubled there), since libraries usually show ``{x!r}``.
    """
    import json

    for secret in secrets:
        if secret and len(secret) >= 3:
            for form in {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]}:
                message = message.replace(form, MASK)
    return message


def describe_structure_error(exc: BaseException, where: str, secret_paths: set[str]) -> list[str]:
    """Turn a cattrs error into one line per field, without secret values."""
    from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

    lines: list[str] = []

    def walk(error: BaseException, path: str) -> None:
        if isinstance(error, ForbiddenExtraKeysError):
            for key in sorted(error.extra_fields):
                lines.append(f"{where}: unknown option {path + key!r}{_known_options_hint(key, error.cl)}")
            return
        if isinstance(error, (ClassValidationError, IterableValidationError)):
            with_notes, others = error.group_exceptions()
            for sub, note in with_notes:
                field = getattr(note, "name", getattr(note, "index", "?"))
                walk(sub, f"{path}{field}.")
            for sub in others:
                walk(sub, path)
            return
        field = path.rstrip(".")
        if not field:
            # Raised by the config class itself (an attrs validator): its message names the field.
            lines.append(f"{where}: {_plain(error)}")
        elif isinstance(error, KeyError) and "." not in field:
            lines.append(f"{where}: option {field!r} is required")
        elif field.split(".")[0] in secret_paths:
            lines.append(f"{where}: option {field!r} is invalid ({type(error).__name__}; value hidden)")
        else:
            lines.append(f"{where}: option {field!r}: {_plain(error)}")

    walk(exc, "")
    return lines or [f"{where}: {_plain(exc)}"]


def _known_options_hint(key: str, config_cls: Any) -> str:
    """Say how to fix an unknown option: the closest option's name, and every option the class takes.

    A misspelled option is the usual cause; naming the right spelling (and the
    whole list) saves a trip to the plugin's README.
    """
    import difflib

    import attrs

    names = [f.name for f in attrs.fields(config_cls)] if attrs.has(config_cls) else []
    if not names:
        return " (this component takes no options)"
    close = difflib.get_close_matches(key, names, n=1)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return f" ({guess}options: {', '.join(sorted(names))})"


def _plain(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def raise_problems(header: str, problems: list[str]) -> None:
    """One ConfigError for all the problems; ``.problems`` keeps them as a list (for ``--json``)."""
    if problems:
        error = ConfigError(header + ("\n  " + "\n  ".join(problems) if len(problems) > 1 else " " + problems[0]))
        error.problems = list(problems)  # type: ignore[attr-defined]
        raise error


def is_loopback_url(url: str | None) -> bool:
    """Whether ``url`` is plain HTTP to this machine: a local fake or emulator, never a cloud service.

    Remote executors use it to pair a loopback API endpoint with the same
    loopback endpoint for the platform's other services (logs) by default.
    """
    import ipaddress
    from urllib.parse import urlsplit

    if not url or not url.startswith("http://"):
        return False
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: A check of one option: the problem with ``value``, or None when it is fine.
FieldCheck = Callable[[Any], "str | None"]


def field_problems(config: object, checks: Mapping[str, FieldCheck]) -> list[tuple[str, str]]:
    """``(option, message)`` for every check that finds a problem; each message starts with the option's name."""
    problems = []
    for name, check in checks.items():
        problem = check(getattr(config, name))
        if problem:
            problems.append((name, problem if problem.startswith(name) else f"{name} {problem}"))
    return problems


def raise_field_problems(config: object, what: str, problems: list[tuple[str, str]]) -> None:
    """Raise every ``(option, message)`` at once, each under its option, as cattrs reports structuring errors.

    A component config checks itself in ``__attrs_post_init__``; raised this
    way, the stack loader names the file, the stack, the component and each
    option (``option 'region': …``) exactly as for a wrong type.
    """
    if not problems:
        return
    from cattrs.errors import AttributeValidationNote, ClassValidationError

    cls = type(config)
    errors = []
    for name, message in problems:
        error = ValueError(message)
        error.__notes__ = [AttributeValidationNote(f"Structuring class {cls.__name__} @ attribute {name}", name, object)]
        errors.append(error)
    raise ClassValidationError(f"invalid {what} options", errors, cls)


def check_positive(value: float) -> str | None:
    return None if value > 0 else f"must be > 0, got {value!r}"


def check_http_url(example: str, bare_host: bool = False) -> FieldCheck:
    """A check that a value is an http(s) URL (or, with ``bare_host``, a host name); unset passes."""
    from urllib.parse import urlsplit

    def check(value: str | None) -> str | None:
        if not value:  # unset ("" when a ${env:…} reference is missing, which is reported already)
            return None
        parts = urlsplit(value if not bare_host or "://" in value else f"https://{value}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"{value!r} is not {'a host or ' if bare_host else ''}an http(s) URL such as {example!r}"
        return None

    return check
