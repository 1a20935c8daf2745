"""``stacks.toml``: named sets of components, and how a name becomes live objects.

Files: the project's ``./stacks.toml`` (or ``$FLOWYML_STACKS_FILE``, which
must name an existing file) over the user's
``$XDG_CONFIG_HOME/flowyml/stacks.toml``; a stack named in both is the
project's. Active stack: explicit name > ``$FLOWYML_STACK`` > ``flowyml stack
use`` > ``default`` > ``local``. Every problem names the file, the stack, the
component and the field; all problems of a stack are reported at once.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, Mapping

from flowyml_core.config import (
    has_env_ref,
    raise_problems,
    referenced_env_values,
    resolve_env_refs,
    scrub,
    secret_field_names,
    spec_field_problems,
)
from flowyml_core.display import printable  # noqa: F401  (commands import it from here)
from flowyml_core.errors import ConfigError, PluginError
from flowyml_core.structuring import structure_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

COMPONENT_KINDS = ("executor", "artifact_store", "cache_store", "router")
STACK_KEYS = frozenset(COMPONENT_KINDS) | {"description"}
BUILTIN = "built-in"
BUILTIN_STACKS: dict[str, dict[str, Any]] = {
    "local": {
        "description": "Run in this process; artifacts and cache under .flowyml/",
        "executor": "local",
        "artifact_store": {"flavor": "local", "path": ".flowyml/artifacts"},
        "cache_store": {"flavor": "local", "path": ".flowyml/cache"},
    }
}
ACTIVE_FILE = Path(".flowyml") / "active-stack"


# Plain classes, not attrs: ``flowyml stack list`` must start in milliseconds.
class ComponentSpec:
    __slots__ = ("kind", "flavor", "options")

    def __init__(self, kind: str, flavor: str, options: dict[str, Any]) -> None:
        self.kind, self.flavor, self.options = kind, flavor, options

    def __repr__(self) -> str:
        return f"ComponentSpec({self.kind!r}, {self.flavor!r})"


class StackSpec:
    __slots__ = ("name", "origin", "components", "description")

    def __init__(self, name: str, origin: str, components: dict[str, ComponentSpec], description: str = "") -> None:
        self.name = name
        self.origin = origin  # a file path, or "built-in"
        self.components = components
        self.description = description

    def __repr__(self) -> str:
        return f"StackSpec({self.name!r}, origin={self.origin!r})"

    def declared(self) -> dict[str, Any]:
        """The stack as written (env references unresolved): safe to show."""
        out: dict[str, Any] = {}
        for kind, comp in self.components.items():
            out[kind] = {"flavor": comp.flavor, **comp.options}
        return out


STACKS_FILE_VAR = "FLOWYML_STACKS_FILE"
_UNSET_HINT = f"unset {STACKS_FILE_VAR} to use ./stacks.toml"


def project_stacks_path(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    env = os.environ if environ is None else environ
    explicit = env.get(STACKS_FILE_VAR)
    return Path(explicit) if explicit else (cwd or Path.cwd()) / "stacks.toml"


def stacks_file_variable(environ: Mapping[str, str], path: Path) -> str | None:
    """``FLOWYML_STACKS_FILE=...`` as the person set it (plus the absolute path if relative), or None if unset.

    Errors about the file start with this, so they say where the path came from:
    the variable is easy to forget once exported.
    """
    raw = environ.get(STACKS_FILE_VAR)
    if not raw:
        return None
    return f"{STACKS_FILE_VAR}={raw}" + ("" if Path(raw).is_absolute() else f" ({path.absolute()})")


def check_stacks_file_variable(environ: Mapping[str, str], path: Path, *, missing_ok: bool = False) -> None:
    """Refuse a ``FLOWYML_STACKS_FILE`` that names no readable file.

    ``./stacks.toml`` is optional, but a path someone exported on purpose is
    not: treating a typo there as "no stacks" would silently run every
    pipeline on the built-in local stack. ``missing_ok`` is for ``flowyml
    stack add``, which was asked to write a stack to that file and creates it.
    """
    label = stacks_file_variable(environ, path)
    if label is None:
        return
    if path.is_dir():
        raise ConfigError(f"{label}: is a directory, not a stacks.toml file; point it at a file, or {_UNSET_HINT}")
    if path.exists() or missing_ok:
        return
    raise ConfigError(
        f"{label}: no such file; fix the path, create the file "
        f"(flowyml stack add NAME --executor FLAVOR writes it), or {_UNSET_HINT}"
    )


def user_stacks_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", str(Path.home()))) / ".config")
    return Path(base) / "flowyml" / "stacks.toml"


def read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    """Text and data of a TOML file; syntax errors say where (line and column)."""
    try:
        # Bytes, then decode: read_text() would turn a lone "\r" (invalid TOML) into "\n" and accept the
        # file, and rewrite CRLF line ends when the file is edited (stack add/remove) and saved.
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {_located(str(exc), text)}") from None


def _located(message: str, text: str) -> str:
    """tomllib says "(at end of document)" for an unfinished file: give its line and column too."""
    if "(at end of document)" not in message:
        return message
    lines = text.split("\n")
    return message.replace(
        "(at end of document)", f"(at end of document, line {len(lines)}, column {len(lines[-1]) + 1})"
    )


def parse_component(kind: str, raw: Any, where: str, problems: list[str]) -> ComponentSpec | None:
    if isinstance(raw, str):
        if not raw:
            problems.append(f"{where}: {kind} flavor is empty")
            return None
        return ComponentSpec(kind, raw, {})
    if isinstance(raw, dict):
        flavor = raw.get("flavor")
        if not isinstance(flavor, str) or not flavor:
            problems.append(f"{where}: {kind} needs a 'flavor' string, e.g. {kind} = {{ flavor = \"local\" }}")
            return None
        return ComponentSpec(kind, flavor, {k: v for k, v in raw.items() if k != "flavor"})
    problems.append(f"{where}: {kind} must be a flavor name or a table with 'flavor', not {type(raw).__name__}")
    return None


def parse_stack(name: str, raw: Any, origin: str, problems: list[str]) -> StackSpec | None:
    where = f"{origin}: stack {name!r}"
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a table like [stacks.{_toml_key(name)}], not {type(raw).__name__}")
        return None
    before = len(problems)
    for key in sorted(set(raw) - STACK_KEYS):
        problems.append(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(STACK_KEYS))})")
    components: dict[str, ComponentSpec] = {}
    for kind in COMPONENT_KINDS:
        if kind in raw:
            comp = parse_component(kind, raw[kind], where, problems)
            if comp is not None:
                components[kind] = comp
    if "executor" not in raw:
        problems.append(f"{where}: no executor; add e.g. executor = \"local\"")
    description = raw.get("description", "")
    if not isinstance(description, str):
        problems.append(f"{where}: description must be a string")
    return StackSpec(name, origin, components, description if isinstance(description, str) else "") if len(problems) == before else None


def choice_hint(why: str | None) -> str:
    """How to fix an active-stack choice that names no stack, by where the choice came from."""
    if why and why.startswith("flowyml stack use"):
        return "choose another with: flowyml stack use NAME"
    if why == "FLOWYML_STACK":
        return "unset FLOWYML_STACK or set it to a known stack"
    if why and why.startswith("default in "):
        return f"set 'default' in {why[len('default in '):]} to a known stack"
    return "name one of the stacks listed"


def _toml_key(name: str) -> str:
    """``name`` as it is written in a TOML table header (quoted and escaped when needed)."""
    if re.fullmatch(r"[A-Za-z0-9_-]+", name):
        return name
    import json

    return json.dumps(name)  # a JSON string is a valid TOML basic string


def _names(names: Any) -> str:
    """Stack names for a one-line message: plain ones as they are, others quoted (they may hold newlines)."""
    return ", ".join(n if re.fullmatch(r"[\w.-]+", n) else repr(n) for n in sorted(names))


class StacksFile:
    def __init__(self, path: Path, origin: str, text: str = "", data: dict[str, Any] | None = None, exists: bool = False) -> None:
        self.path = path
        self.origin = origin  # "project" or "user"
        self.text = text
        self.data = data or {}
        self.exists = exists

    @classmethod
    def load(cls, path: Path, origin: str) -> StacksFile:
        if not path.is_file():
            return cls(path, origin)
        text, data = read_toml(path)
        return cls(path, origin, text, data, True)

    def stacks(self, problems: list[str]) -> dict[str, StackSpec]:
        for key in sorted(set(self.data) - {"default", "stacks"}):
            problems.append(f"{self.path}: unknown top-level key {key!r} (allowed: default, stacks)")
        default = self.data.get("default")
        if default is not None and not isinstance(default, str):
            problems.append(f"{self.path}: default must be a stack name (a string)")
        raw = self.data.get("stacks", {})
        if not isinstance(raw, dict):
            problems.append(f"{self.path}: 'stacks' must be a table of stacks")
            return {}
        specs = {}
        for name, body in raw.items():
            spec = parse_stack(name, body, str(self.path), problems)
            if spec is not None:
                specs[name] = spec
        return specs


class ResolvedStack:
    """Live components of a stack. Holds resolved secrets: never print it."""

    def __init__(
        self,
        name: str,
        spec: StackSpec,
        components: dict[str, Any],
        secrets: list[str] | None = None,
        project_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.components = components
        self._secrets = list(secrets or ())  # scrubbed from the problems validate() reports
        #: The project the stack was resolved for: its runs are recorded in its ``.flowyml/runs/``
        #: (``None``: a stack built elsewhere, e.g. inside a step runner, records nothing).
        self.project_dir = project_dir

    @property
    def executor(self) -> Any:
        return self.components["executor"]

    @property
    def artifact_store(self) -> Any:
        return self.components.get("artifact_store")

    @property
    def cache_store(self) -> Any:
        return self.components.get("cache_store")

    @property
    def router(self) -> Any:
        return self.components.get("router")

    def __repr__(self) -> str:
        return f"ResolvedStack({self.name!r}, {sorted(self.components)})"

    @property
    def secrets(self) -> list[str]:
        """The values this stack read from the environment or from secret fields: to scrub from output."""
        return list(self._secrets)

    def validate(self) -> list[str]:
        """Run each component's validate(); return the problems found."""
        problems = []
        for kind, component in self.components.items():
            check = getattr(component, "validate", None)
            if check is None:
                continue
            try:
                check()
            except Exception as exc:  # reported to the user, one line per component
                flavor = self.spec.components[kind].flavor
                problems.append(scrub(f"stack {self.name!r}, {kind} {flavor!r}: {exc}", self._secrets))
        return problems


class StackRegistry:
    """The stacks visible from a project directory, and the active one."""

    def __init__(self, files: list[StacksFile], environ: Mapping[str, str], project_dir: Path) -> None:
        self.files = files
        self.environ = environ
        self.project_dir = project_dir
        problems: list[str] = []
        self.stacks: dict[str, StackSpec] = {}
        for name, raw in BUILTIN_STACKS.items():
            spec = parse_stack(name, raw, BUILTIN, problems)
            assert spec is not None
            self.stacks[name] = spec
        self.default: str | None = None
        self.default_origin: str | None = None
        for stacks_file in reversed(files):  # user first, then project overrides
            self.stacks.update(stacks_file.stacks(problems))
            if isinstance(stacks_file.data.get("default"), str):
                self.default = stacks_file.data["default"]
                self.default_origin = str(stacks_file.path)
        if self.default is not None and self.default not in self.stacks and not problems:
            problems.append(
                f"{self.default_origin}: default = {self.default!r} names no stack (known: {_names(self.stacks)})"
            )
        raise_problems("invalid stacks configuration:", problems)

    @classmethod
    def load(
        cls, environ: Mapping[str, str] | None = None, cwd: Path | None = None, *, missing_ok: bool = False
    ) -> StackRegistry:
        """Read the stacks files; a ``FLOWYML_STACKS_FILE`` that does not exist is an error unless ``missing_ok``."""
        env = dict(os.environ if environ is None else environ)
        project = project_stacks_path(env, cwd)
        check_stacks_file_variable(env, project, missing_ok=missing_ok)
        files = [StacksFile.load(project, "project"), StacksFile.load(user_stacks_path(env), "user")]
        return cls(files, env, project.parent)

    @property
    def project_file(self) -> StacksFile:
        return self.files[0]

    @property
    def active_file(self) -> Path:
        return self.project_dir / ACTIVE_FILE

    def saved_active(self) -> str | None:
        try:
            text = self.active_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        # Written as NAME + "\n"; a name may itself end in spaces, so strip more only if needed.
        name = text[:-1] if text.endswith("\n") else text
        if name not in self.stacks:
            name = name.strip()
        return name or None

    def active(self, explicit: str | None = None) -> tuple[str, str]:
        """The active stack's name and why it is active."""
        if explicit:
            return explicit, "--stack"
        if self.environ.get("FLOWYML_STACK"):
            return self.environ["FLOWYML_STACK"], "FLOWYML_STACK"
        saved = self.saved_active()
        if saved:
            return saved, f"flowyml stack use ({self.active_file})"
        if self.default:
            return self.default, f"default in {self.default_origin}"
        return "local", "fallback"

    def get(self, name: str, why: str | None = None) -> StackSpec:
        """The stack named ``name``; ``why`` (from :meth:`active`) says who chose it, for the error."""
        try:
            return self.stacks[name]
        except KeyError:
            files = ", ".join(str(f.path) for f in self.files if f.exists) or "no stacks.toml found"
            # A name that came from FLOWYML_STACK or `stack use` is easy to forget about: say so.
            chosen = f", chosen by {why}" if why and why != "--stack" else ""
            hint = choice_hint(why)
            if hint and not hint.startswith("name one"):
                chosen += f"; {hint}"
            raise ConfigError(
                f"unknown stack {name!r}{chosen} (known: {_names(self.stacks)}; read from: {files})"
            ) from None

    def resolve(
        self, name: str | None = None, registry: Any | None = None, kinds: tuple[str, ...] | None = None
    ) -> ResolvedStack:
        """Build the stack's components; all problems of the stack reported at once.

        ``kinds`` limits which components are built: a step runner inside a
        container needs the stores, not the orchestrator that started it (nor
        that orchestrator's SDKs).
        """
        from flowyml_core.plugins import get_registry

        stack_name, why = self.active(name)
        spec = self.get(stack_name, why)
        registry = registry or get_registry()
        problems: list[str] = []
        secrets: list[str] = []
        built: dict[str, tuple[type, Any, str]] = {}
        for kind, comp in spec.components.items():
            if kinds is not None and kind not in kinds:
                continue
            where = f"{spec.origin}: stack {stack_name!r}, {kind} {comp.flavor!r}"
            try:
                impl, config_cls = registry.flavor(kind, comp.flavor).load()
            except PluginError as exc:
                problems.append(f"{where}: {exc}")
                continue
            problems.extend(spec_field_problems(comp.options, config_cls, where))
            resolved = {
                key: resolve_env_refs(value, self.environ, f"{where}: option {key!r}", problems)
                for key, value in comp.options.items()
            }
            # Secrets: every value read from the environment, and whatever is
            # written in a field the config declares with secret_field().
            secret_names = secret_field_names(config_cls)
            secrets.extend(referenced_env_values(comp.options, self.environ))
            secrets.extend(_strings(resolved[k]) for k in secret_names if resolved.get(k) not in (None, ""))
            secret_paths = {k for k, v in comp.options.items() if has_env_ref(v)} | secret_names
            config = structure_config(config_cls, resolved, where, secret_paths, problems)
            built[kind] = (impl, config, where)
        raise_problems(f"stack {stack_name!r} cannot be used:", [scrub(p, secrets) for p in problems])

        components: dict[str, Any] = {}
        for kind, (impl, config, where) in built.items():
            try:
                components[kind] = impl(config)
            except Exception as exc:
                problems.append(scrub(f"{where}: could not be created: {type(exc).__name__}: {exc}", secrets))
        raise_problems(f"stack {stack_name!r} cannot be used:", problems)
        return ResolvedStack(stack_name, spec, components, secrets, project_dir=self.project_dir)


def _strings(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


# -- the stack ``Pipeline.run`` uses, resolved once per process ----------------------------------------
class _CachedStack:
    """A resolved stack and everything it was built from, to tell whether it is still current."""

    __slots__ = ("stack", "inputs", "registry", "env_names", "env_values")

    def __init__(self, stack: ResolvedStack, inputs: tuple[Any, ...], registry: Any, env_names: tuple[str, ...]) -> None:
        self.stack = stack
        self.inputs = inputs
        self.registry = registry
        self.env_names = env_names
        self.env_values = _env_values(env_names)  # secrets among them: never shown

    def current(self, inputs: tuple[Any, ...], registry: Any) -> bool:
        return inputs == self.inputs and registry is self.registry and _env_values(self.env_names) == self.env_values


_STACK_CACHE: dict[str | None, _CachedStack] = {}
_STACK_CACHE_LOCK = threading.Lock()
_ACTIVE_FILE = ACTIVE_FILE.as_posix()


def cached_stack(name: str | None = None) -> ResolvedStack:
    """The stack ``name`` (or the active one), resolved once per process and reused while nothing changed.

    ``Pipeline.run(stack=...)`` calls this on every run: re-reading and
    re-resolving ``stacks.toml`` each time cost more than running a small
    pipeline. The stack is built again when anything it was built from
    changes: the current directory (local store paths are relative to it),
    ``FLOWYML_STACKS_FILE``, ``XDG_CONFIG_HOME``/``HOME``, the modification
    time, size or inode of the project and user stacks files, the value of
    every ``${env:NAME}`` variable the stack refers to, and the plugin registry
    (``reset_registry``); for the active stack (no ``name``), also
    ``FLOWYML_STACK`` and, when that is unset, the active-stack file. Runs in
    one process therefore share the components, and the state they hold
    (connections, clients, a Dask cluster). Errors are not cached.

    What cannot change the answer is not read: each ``os.stat`` here releases
    the GIL, and while the history's thread has an entry to write, each
    release hands it the interpreter for ~20 µs of the run's time.
    """
    from flowyml_core.plugins import get_registry

    inputs = _stack_inputs(name)
    registry = get_registry()
    entry = _STACK_CACHE.get(name)
    if entry is not None and entry.current(inputs, registry):
        return entry.stack
    with _STACK_CACHE_LOCK:
        entry = _STACK_CACHE.get(name)
        if entry is not None and entry.current(inputs, registry):
            return entry.stack
        # Stale stacks' components go now (a reset registry makes every cached stack stale).
        _STACK_CACHE.pop(name, None)
        for key in [k for k, e in _STACK_CACHE.items() if e.registry is not registry]:
            del _STACK_CACHE[key]
        stack = StackRegistry.load().resolve(name, registry=registry)
        _STACK_CACHE[name] = _CachedStack(stack, inputs, registry, _env_names(stack.spec))
        return stack


def forget_cached_stacks() -> None:
    """Drop every stack :func:`cached_stack` keeps (their components are closed when garbage collected)."""
    with _STACK_CACHE_LOCK:
        _STACK_CACHE.clear()


def _stack_inputs(name: str | None) -> tuple[Any, ...]:
    """What :meth:`StackRegistry.load` and :meth:`StackRegistry.active` read, in a form cheap to compare.

    String paths and ``os.stat``, not :mod:`pathlib`: this runs on every
    ``Pipeline.run`` and must cost microseconds.
    """
    env = os.environ
    cwd = os.getcwd()
    explicit = env.get(STACKS_FILE_VAR)
    project = os.path.join(cwd, explicit) if explicit else f"{cwd}/stacks.toml"
    xdg, home = env.get("XDG_CONFIG_HOME"), env.get("HOME")
    user = f"{xdg or (home or str(Path.home())) + '/.config'}/flowyml/stacks.toml"
    if name:  # a named stack: neither FLOWYML_STACK nor the active-stack file is read (StackRegistry.active)
        return name, cwd, explicit, xdg, home, _file_stamp(project), _file_stamp(user)
    chosen = env.get("FLOWYML_STACK")  # when set, the active-stack file is not read either
    active = None if chosen else _file_stamp(f"{os.path.dirname(project)}/{_ACTIVE_FILE}")
    return (name, cwd, explicit, xdg, home, chosen, _file_stamp(project), _file_stamp(user), active)


def _file_stamp(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino


def _env_names(spec: StackSpec) -> tuple[str, ...]:
    """The variables the stack's ``${env:NAME}`` references read."""
    from flowyml_core.config import ENV_REF

    names: set[str] = set()

    def collect(value: Any) -> None:
        if isinstance(value, str):
            names.update(ENV_REF.findall(value))
        elif isinstance(value, Mapping):
            for item in value.values():
                collect(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)

    for comp in spec.components.values():
        collect(comp.options)
    return tuple(sorted(names))


def _env_values(names: tuple[str, ...]) -> tuple[str | None, ...]:
    env = os.environ
    return tuple(env.get(n) for n in names)
