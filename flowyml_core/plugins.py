"""Plugin discovery and the flavor registry.

Every component, the local ones included, comes from a plugin found through the
``flowyml.plugins`` entry-point group. Entry points are read once per process;
``FLOWYML_DISABLE_PLUGINS=a,b`` blocks plugins by name before they are
imported (a name that matches no plugin is a warning); a plugin that fails is
reported with its error and the others keep working; a plugin written for
another plugin API takes no part. Implementations are ``"module:Name"``
strings imported only when a stack uses them.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import threading
from typing import Any, Callable, Iterable, Iterator

import attrs
import pluggy

from flowyml_core import hookspecs
from flowyml_core.errors import PluginError

logger = logging.getLogger("flowyml.plugins")

ENTRY_POINT_GROUP = "flowyml.plugins"
#: The plugin API this core provides. A plugin declares the version it was
#: written for as ``FLOWYML_API_VERSION`` in its plugin module.
API_VERSION = "1.0"

KINDS = ("executor", "cache_store", "artifact_store", "router")
HOOK_FOR_KIND = {
    "executor": "register_executors",
    "cache_store": "register_cache_stores",
    "artifact_store": "register_artifact_stores",
    "router": "register_routers",
}
#: Where the flavors people ask for by name live, for the "pip install" hint.
KNOWN_FLAVORS: dict[tuple[str, str], str] = {
    ("executor", "local"): "flowyml-local",
    ("cache_store", "local"): "flowyml-local",
    ("artifact_store", "local"): "flowyml-local",
    ("router", "type"): "flowyml-local",
    ("artifact_store", "gcs"): "flowyml-gcs",
    ("cache_store", "gcs"): "flowyml-gcs",
    ("artifact_store", "s3"): "flowyml-s3",
    ("cache_store", "s3"): "flowyml-s3",
    ("executor", "vertex"): "flowyml-vertex",
    ("executor", "dask"): "flowyml-dask",
    ("executor", "docker"): "flowyml-docker",
    ("executor", "sagemaker"): "flowyml-sagemaker",
    ("executor", "kubernetes"): "flowyml-kubernetes",
}
#: flowyml's own distributions are not on the package index: they install from
#: the wheels ``scripts/build-wheels.sh`` builds into a checkout's ``dist/``,
#: where pip also finds the flowyml plugins each depends on.
OWN_DISTRIBUTIONS = frozenset(KNOWN_FLAVORS.values()) | {"flowyml-core"}


def install_command(package: str) -> str:
    """A command that installs ``package`` (for hints): flowyml's own from a checkout's wheels."""
    if package in OWN_DISTRIBUTIONS:
        return f"pip install {package} --find-links dist (in a flowyml checkout, after bash scripts/build-wheels.sh)"
    return f"pip install {package}"


_FLAVOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_OBJECT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def import_object(path: str | type | Callable[..., Any]) -> Any:
    """Resolve ``"module:Name"`` (or return a class/callable as is)."""
    if not isinstance(path, str):
        return path
    module_name, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


def _api_problem(declared: str | None) -> str | None:
    if declared is None:
        return None
    try:
        major, minor = (int(x) for x in str(declared).split(".")[:2])
        core_major, core_minor = (int(x) for x in API_VERSION.split("."))
    except ValueError:
        return f"declares FLOWYML_API_VERSION={declared!r}, which is not of the form 'MAJOR.MINOR'"
    if major != core_major or minor > core_minor:
        fix = "upgrade flowyml-core" if (major, minor) > (core_major, core_minor) else "upgrade the plugin"
        return (
            f"written for flowyml plugin API {declared}, but this flowyml-core provides {API_VERSION} "
            f"({fix}, or install a release of the plugin made for API {core_major}.x)"
        )
    return None


@attrs.define(frozen=True)
class Flavor:
    """One registered implementation of a component kind."""

    kind: str
    name: str
    implementation: Any
    config: Any = None
    summary: str = ""
    plugin: str = ""
    distribution: str | None = None

    def load(self) -> tuple[type, type | None]:
        """Import the implementation and its config class."""
        label = f"{self.kind.replace('_', ' ')} flavor {self.name!r} (plugin {self.plugin!r})"
        try:
            impl = import_object(self.implementation)
            config = import_object(self.config) if self.config is not None else None
        except ImportError as exc:
            package = KNOWN_FLAVORS.get((self.kind, self.name)) or self.distribution or self.plugin
            raise PluginError(
                f"{label} cannot be imported: {exc}. Reinstall it with: {install_command(package)}"
            ) from exc
        except Exception as exc:  # a wrong "module:Name", or a module that fails while importing
            raise PluginError(
                f"{label} cannot be imported: {type(exc).__name__}: {exc}. This is a bug in the plugin; "
                "report it to its authors"
            ) from exc
        return impl, config


@attrs.define
class PluginInfo:
    name: str
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    api_version: str | None = None
    api_problem: str | None = None
    error: str | None = None
    blocked: bool = False
    flavors: list[tuple[str, str]] = attrs.field(factory=list)

    def as_dict(self) -> dict[str, Any]:
        by_kind: dict[str, list[str]] = {}
        for kind, name in self.flavors:
            by_kind.setdefault(kind, []).append(name)
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "api_version": self.api_version,
            "api_problem": self.api_problem,
            "blocked": self.blocked,
            "error": self.error,
            "flavors": by_kind,
        }


@attrs.define(frozen=True)
class MaterializerSpec:
    name: str
    implementation: Any
    types: tuple[str, ...]
    priority: int = 0
    plugin: str = ""


def blocked_plugins(environ: dict[str, str] | None = None) -> set[str]:
    raw = (environ if environ is not None else os.environ).get("FLOWYML_DISABLE_PLUGINS", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


@attrs.define(frozen=True)
class _EntryPoint:
    name: str
    value: str
    distribution: str | None
    version: str | None

    def load(self) -> Any:
        return import_object(self.value)


def iter_entry_points(group: str = ENTRY_POINT_GROUP, path: Iterable[str] | None = None) -> Iterator[_EntryPoint]:
    """Entry points of ``group`` on ``sys.path``, cheaply.

    ``importlib.metadata.entry_points()`` parses every installed distribution
    (~80-100 ms with the Google SDKs installed); this reads only the small
    ``entry_points.txt`` files and parses those that mention the group.
    Non-directory path entries (zips, eggs) go through importlib.metadata.
    """
    seen: set[str] = set()
    for entry in list(path if path is not None else sys.path):
        directory = entry or os.getcwd()
        if not os.path.isdir(directory):
            # A zip or egg needs importlib.metadata. A path entry that does not
            # exist (python311.zip is on every sys.path) has nothing to read,
            # and asking importlib.metadata about it costs 20-30 ms per start.
            if os.path.isfile(directory):
                yield from _entry_points_via_metadata(group, entry, seen)
            continue
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(directory, name, "entry_points.txt"), encoding="utf-8") as fh:
                    text = fh.read()
            except OSError:
                continue
            if group not in text:
                continue
            dist, version = _dist_name_version(name)
            if dist in seen:  # an earlier path entry shadows later ones, as for imports
                continue
            seen.add(dist)
            yield from _parse_entry_points(text, group, dist, version)


def _dist_name_version(dirname: str) -> tuple[str, str | None]:
    stem = dirname.rsplit(".", 1)[0]
    name, _, version = stem.partition("-")
    return name.replace("_", "-").lower(), version.split("-")[0] or None


def _parse_entry_points(text: str, group: str, dist: str, version: str | None) -> Iterator[_EntryPoint]:
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
            continue
        if current == group and "=" in line:
            name, _, value = line.partition("=")
            yield _EntryPoint(name.strip(), value.split("[")[0].strip(), dist, version)


def _entry_points_via_metadata(group: str, entry: str, seen: set[str]) -> Iterator[_EntryPoint]:
    from importlib import metadata

    try:
        dists = list(metadata.distributions(path=[entry]))
    except Exception as exc:  # a broken path entry must not hide the other plugins
        logger.warning("cannot read plugins from %s: %r", entry, exc)
        return
    for dist in dists:
        name = (dist.metadata["Name"] or "").replace("_", "-").lower()
        if name in seen:
            continue
        for ep in dist.entry_points:
            if ep.group == group:
                seen.add(name)
                yield _EntryPoint(ep.name, ep.value, name, dist.version)


class Registry:
    """Plugins, their flavors per kind, and what went wrong loading them."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("flowyml")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.flavors: dict[str, dict[str, Flavor]] = {kind: {} for kind in KINDS}
        self.conflicts: dict[tuple[str, str], list[str]] = {}
        self.materializers: list[MaterializerSpec] = []
        #: (kind, flavor) -> the incompatible plugin that offers it: refused, named in errors.
        self.refused: dict[tuple[str, str], str] = {}

    @property
    def hook(self) -> Any:
        return self.pm.hook

    # -- loading -------------------------------------------------------------
    def load_entry_points(self, entry_points: Iterable[Any] | None = None, blocked: set[str] | None = None) -> None:
        blocked = blocked_plugins() if blocked is None else blocked
        for name in blocked:
            self.pm.set_blocked(name)
        for ep in entry_points if entry_points is not None else iter_entry_points():
            info = PluginInfo(
                name=ep.name,
                distribution=getattr(ep, "distribution", None),
                version=getattr(ep, "version", None),
                module=ep.value,
            )
            if ep.name in self.plugins:
                logger.warning("plugin name %r is declared twice; keeping the first", ep.name)
                continue
            self.plugins[ep.name] = info
            if ep.name in blocked:
                info.blocked = True
                continue
            try:
                module = ep.load()
            except Exception as exc:
                info.error = f"import failed: {type(exc).__name__}: {exc}"
                logger.warning("plugin %r failed to import: %s", ep.name, info.error)
                continue
            self._register(module, info)
        self._warn_unknown_blocked(blocked)

    def _warn_unknown_blocked(self, blocked: set[str]) -> None:
        """One warning for FLOWYML_DISABLE_PLUGINS names that match no installed plugin.

        A misspelt name disables nothing, so the plugin someone meant to switch
        off still loads: say so instead of ignoring it. Only entry-point names
        block; a distribution name gets a hint with the name to write.
        """
        unknown = sorted(blocked - set(self.plugins))
        if not unknown:
            return
        installed = ", ".join(sorted(self.plugins))
        by_distribution: dict[str, list[str]] = {}
        for info in self.plugins.values():
            if info.distribution:
                by_distribution.setdefault(info.distribution, []).append(info.name)
        hints = [
            f"write {' or '.join(repr(n) for n in sorted(by_distribution[name]))} for the distribution {name}"
            for name in unknown if name in by_distribution
        ]
        logger.warning(
            "FLOWYML_DISABLE_PLUGINS: no installed plugin is named %s, so %s nothing (%s); "
            "use the names `flowyml plugins` lists%s",
            " or ".join(repr(n) for n in unknown),
            "it disables" if len(unknown) == 1 else "they disable",
            f"installed plugins: {installed}" if installed else "no plugins are installed",
            ": " + "; ".join(hints) if hints else "",
        )

    def register(self, plugin: Any, name: str | None = None, *, distribution: str | None = None, version: str | None = None) -> PluginInfo:
        """Register an in-process plugin (a module or an object with hookimpls)."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        info = PluginInfo(name=name, distribution=distribution, version=version, module=getattr(plugin, "__name__", None))
        self.plugins[name] = info
        self._register(plugin, info)
        return info

    def _register(self, plugin: Any, info: PluginInfo) -> None:
        info.api_version = getattr(plugin, "FLOWYML_API_VERSION", None)
        info.api_problem = _api_problem(info.api_version)
        if info.api_problem:
            self._list_incompatible(plugin, info)
            return
        if not self._add_to(self.pm, plugin, info):
            return
        for kind, hook_name in HOOK_FOR_KIND.items():
            self._call_register_hook(self.pm, plugin, info, hook_name, self._flavor_callback(kind, info))
        self._call_register_hook(self.pm, plugin, info, "register_materializers", self._materializer_callback(info))

    def _add_to(self, pm: pluggy.PluginManager, plugin: Any, info: PluginInfo) -> bool:
        """Register ``plugin`` with ``pm``; a plugin whose hookimpls pluggy refuses is reported and left out."""
        try:
            pm.register(plugin, name=info.name)
            pm.check_pending()
        except Exception as exc:
            info.error = f"invalid plugin: {type(exc).__name__}: {exc}"
            logger.warning("plugin %r rejected: %s", info.name, info.error)
            if pm.is_registered(plugin):
                pm.unregister(plugin)
            return False
        return True

    def _list_incompatible(self, plugin: Any, info: PluginInfo) -> None:
        """Record what a plugin written for another API offers, without letting it take part.

        Its flavors used to be registered and refused only at lookup, but the
        plugin sat in the plugin manager, so its observer hooks ran on every
        run and its materializers were chosen for data: code written against
        another contract, called anyway. Now it never joins ``self.pm``. Only
        its flavor registrations are read, through a plugin manager of their
        own, so that ``flowyml plugins`` can show them and a stack naming one
        gets the version mismatch rather than "unknown flavor". Materializers
        are not read: nobody names them in a stack.
        """
        listing = pluggy.PluginManager("flowyml")
        listing.add_hookspecs(hookspecs)
        if not self._add_to(listing, plugin, info):
            return
        logger.debug("plugin %r is not used: %s", info.name, info.api_problem)
        for kind, hook_name in HOOK_FOR_KIND.items():
            self._call_register_hook(listing, plugin, info, hook_name, self._flavor_callback(kind, info, refused=True))

    def _call_register_hook(
        self, pm: pluggy.PluginManager, plugin: Any, info: PluginInfo, hook_name: str, callback: Callable[..., None]
    ) -> None:
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if impl.plugin is not plugin:
                continue
            try:
                impl.function(**{arg: callback for arg in impl.argnames})
            except Exception as exc:
                _report(info, f"{hook_name} failed: {type(exc).__name__}: {exc}")

    def _flavor_callback(self, kind: str, info: PluginInfo, *, refused: bool = False) -> Callable[..., None]:
        """The ``register`` a plugin's hook calls; ``refused``: the plugin's API is incompatible, only list it."""
        def register(name: str, implementation: Any, *, config: Any = None, summary: str = "") -> None:
            # A bad registration is reported, not raised: raising would abort the
            # plugin's hook and lose the valid registrations after it.
            try:
                _check_registration(kind, name, implementation, config)
            except PluginError as exc:
                _report(info, f"{HOOK_FOR_KIND[kind]}: {exc}")
                return
            info.flavors.append((kind, name))
            if refused:
                self.refused.setdefault((kind, name), info.name)
                return
            flavor = Flavor(
                kind=kind, name=name, implementation=implementation, config=config, summary=summary,
                plugin=info.name, distribution=info.distribution,
            )
            existing = self.flavors[kind].get(name)
            if existing is not None and existing.plugin != info.name:
                owners = self.conflicts.setdefault((kind, name), [existing.plugin])
                owners.append(info.name)
                logger.warning("%s flavor %r is registered by both %s", kind, name, " and ".join(owners))
            else:
                self.flavors[kind][name] = flavor

        return register

    def _materializer_callback(self, info: PluginInfo) -> Callable[..., None]:
        def register(name: str, implementation: Any, *, types: Iterable[str] = (), priority: int = 0) -> None:
            try:
                _check_object_path("materializer", name, implementation)
            except PluginError as exc:
                _report(info, f"register_materializers: {exc}")
                return
            self.materializers.append(MaterializerSpec(name, implementation, tuple(types), priority, info.name))
            info.flavors.append(("materializer", name))

        return register

    # -- lookup --------------------------------------------------------------
    def flavor(self, kind: str, name: str) -> Flavor:
        """The flavor, or a PluginError that says which package to install."""
        label = kind.replace("_", " ")
        owners = self.conflicts.get((kind, name))
        if owners:
            raise PluginError(
                f"{label} flavor {name!r} is registered by several plugins: {' and '.join(owners)}; "
                f"uninstall one or disable it with FLOWYML_DISABLE_PLUGINS={owners[-1]}"
            )
        flavor = self.flavors.get(kind, {}).get(name)
        if flavor is not None:
            return flavor
        refused_by = self.refused.get((kind, name))
        if refused_by is not None:
            problem = self.plugins[refused_by].api_problem
            raise PluginError(f"plugin {refused_by!r} providing {label} flavor {name!r} cannot be used: {problem}")
        package = KNOWN_FLAVORS.get((kind, name))
        blocked = [p for p in self.plugins.values() if p.blocked and package and p.distribution == package]
        if blocked:
            raise PluginError(
                f"{label} flavor {name!r} comes from plugin {blocked[0].name!r}, which FLOWYML_DISABLE_PLUGINS disables; "
                f"remove {blocked[0].name!r} from FLOWYML_DISABLE_PLUGINS to use it"
            )
        broken = [p for p in self.plugins.values() if p.error and package and p.distribution == package]
        if broken:
            raise PluginError(f"{label} flavor {name!r}: plugin {broken[0].name!r} failed to load: {broken[0].error}")
        available = ", ".join(sorted(self.flavors.get(kind, {}))) or "none"
        hint = f"install it with: {install_command(package)}" if package else "install the plugin that provides it"
        # A disabled plugin was never imported, so what it provides is unknown:
        # name it as a possible source rather than claim it is the source.
        maybe = sorted(p.name for p in self.plugins.values() if p.blocked and not package)
        if maybe:
            hint = f"FLOWYML_DISABLE_PLUGINS disables {', '.join(maybe)}, which may provide it; otherwise {hint}"
        raise PluginError(f"unknown {label} flavor {name!r} (installed: {available}); {hint}")

    def materializer_specs(self) -> list[MaterializerSpec]:
        return sorted(self.materializers, key=lambda m: -m.priority)


def _report(info: PluginInfo, message: str) -> None:
    """Add a problem to what ``flowyml plugins`` shows for this plugin."""
    info.error = f"{info.error}; {message}" if info.error else message
    logger.warning("plugin %r: %s", info.name, message)


def _check_object_path(kind: str, name: str, value: Any) -> None:
    if isinstance(value, str):
        if not _OBJECT_PATH.match(value):
            raise PluginError(f"{kind} {name!r}: implementation {value!r} must be 'module:Name'")
    elif not callable(value):
        raise PluginError(f"{kind} {name!r}: implementation must be a 'module:Name' string or a class")


def _check_registration(kind: str, name: str, implementation: Any, config: Any) -> None:
    if not isinstance(name, str) or not _FLAVOR_NAME.match(name):
        raise PluginError(f"{kind} flavor name {name!r} must be letters, digits, '-', '_' or '.'")
    _check_object_path(f"{kind} flavor", name, implementation)
    if config is not None:
        _check_object_path(f"{kind} flavor config", name, config)


_registry: Registry | None = None
_lock = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry, loaded from entry points on first use."""
    global _registry
    if _registry is None:
        with _lock:
            if _registry is None:
                registry = Registry()
                registry.load_entry_points()
                _registry = registry
    return _registry


def reset_registry(registry: Registry | None = None) -> None:
    """Forget the loaded plugins (tests), or install a prepared registry."""
    global _registry
    with _lock:
        _registry = registry

