"""A throwaway flowyml project for tests: its own stacks.toml, plugin registry and hook recorder.

Nothing here touches the process-wide plugin registry or the developer's
``~/.config``: a :class:`KitProject` resolves stacks with a private
:class:`~flowyml_core.plugins.Registry` loaded from the installed entry points,
plus the kit's own store flavors (``kit-dir``) and an observer that records the
run events it sees.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from flowyml_core.hookspecs import hookimpl

#: Name of the kit's in-process plugin and of its store flavors.
KIT_PLUGIN = "flowyml-testing"
KIT_STORE_FLAVOR = "kit-dir"


class KitStoresPlugin:
    """Registers the kit's reference stores as ``kit-dir`` flavors."""

    FLOWYML_API_VERSION = "1.0"

    @hookimpl
    def register_cache_stores(self, register: Any) -> None:
        register(KIT_STORE_FLAVOR, "flowyml_core.testing.stores:DirCacheStore",
                 config="flowyml_core.testing.stores:DirStoreConfig", summary="conformance kit: cache files in a directory")

    @hookimpl
    def register_artifact_stores(self, register: Any) -> None:
        register(KIT_STORE_FLAVOR, "flowyml_core.testing.stores:DirArtifactStore",
                 config="flowyml_core.testing.stores:DirStoreConfig", summary="conformance kit: artifacts in a directory")


class EventRecorder:
    """Observer hooks that keep what they saw, to check that an executor reports every step."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    @hookimpl
    def on_run_start(self, run: Any) -> None:
        self.events.append(("run_start", run.run_id))

    @hookimpl
    def on_step_end(self, run: Any, result: Any) -> None:
        self.events.append(("step_end", result.step_name))

    @hookimpl
    def on_run_end(self, run: Any, result: Any) -> None:
        self.events.append(("run_end", getattr(result, "status", None)))

    def steps(self) -> list[str]:
        return [value for kind, value in self.events if kind == "step_end"]

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


def toml_value(value: Any) -> Any:
    """Options as TOML can hold them (paths become strings)."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {k: toml_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [toml_value(v) for v in value]
    return value


def author_plugin(plugin: Any | None) -> dict[str, Any]:
    """The ``plugins`` argument of :class:`KitProject` for a contract's ``plugin`` class attribute."""
    if plugin is None:
        return {}
    name = plugin if isinstance(plugin, str) else getattr(plugin, "__name__", None) or type(plugin).__name__
    return {name: plugin}


class KitProject:
    """A project directory with a ``stacks.toml`` the test writes, resolved with a private registry.

    ``plugins`` maps a name to a plugin registered in process besides the installed ones: a module, an
    object with hookimpls, or the dotted name of a module (``"mypkg.plugin"``).
    """

    def __init__(self, path: Path, plugins: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.stacks_file = self.path / "stacks.toml"
        if not self.stacks_file.exists():
            # FLOWYML_STACKS_FILE points here, and naming a missing file is an error:
            # a test may run the CLI before it adds a stack.
            self.stacks_file.write_text("# stacks of a flowyml conformance-kit test project\n", encoding="utf-8")
        self.extra_plugins = dict(plugins or {})
        self.recorder = EventRecorder()
        self._registry: Any = None
        self._stacks: dict[str, Any] = {}

    # -- stacks.toml ---------------------------------------------------------------
    def add_stack(
        self,
        name: str,
        executor: str,
        executor_options: Mapping[str, Any] | None = None,
        *,
        cache_store: Mapping[str, Any] | str | None = "kit",
        artifact_store: Mapping[str, Any] | str | None = "kit",
        router: Mapping[str, Any] | str | None = None,
        default: bool = False,
    ) -> str:
        """Add ``[stacks.NAME]`` to this project's stacks.toml and return the name.

        ``cache_store`` / ``artifact_store`` default to the kit's ``kit-dir``
        stores under ``.flowyml/<name>/``; pass None to leave them out, or a
        table (``{"flavor": "local", "path": ...}``) for another flavor.
        """
        import tomli_w

        stack: dict[str, Any] = {
            "executor": {"flavor": executor, **toml_value(executor_options or {})} if executor_options else executor
        }
        for kind, spec in (("cache_store", cache_store), ("artifact_store", artifact_store), ("router", router)):
            if spec == "kit":
                spec = {"flavor": KIT_STORE_FLAVOR, "path": str(self.path / ".flowyml" / name / kind)}
            if spec is not None:
                stack[kind] = toml_value(spec) if not isinstance(spec, str) else spec
        self._stacks[name] = stack
        data: dict[str, Any] = {"stacks": self._stacks}
        if default:
            data["default"] = name
        self.stacks_file.write_text(tomli_w.dumps(data), encoding="utf-8")
        return name

    # -- resolution and runs ----------------------------------------------------------
    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("FLOWYML_STACK",)}
        env["FLOWYML_STACKS_FILE"] = str(self.stacks_file)
        env["XDG_CONFIG_HOME"] = str(self.path / ".xdg")
        return env

    def registry(self) -> Any:
        """Installed plugins (entry points), the kit's stores, the recorder and any extra plugins."""
        if self._registry is None:
            from flowyml_core.plugins import Registry, import_object

            registry = Registry()
            registry.load_entry_points()
            registry.register(KitStoresPlugin(), name=KIT_PLUGIN)
            for name, plugin in self.extra_plugins.items():
                plugin = import_object(plugin)  # "pkg.plugin", as authors write it, or the module itself
                # Installed already (its entry point loaded it): registering it twice would fail.
                if name not in registry.plugins and not registry.pm.is_registered(plugin):
                    registry.register(plugin, name=name)
            registry.pm.register(self.recorder, name="flowyml-testing-recorder")
            self._registry = registry
        return self._registry

    def resolve(self, name: str) -> Any:
        """The live components of stack ``name`` (a ResolvedStack)."""
        from flowyml_core.stacks import StackRegistry

        return StackRegistry.load(environ=self.environ(), cwd=self.path).resolve(name, registry=self.registry())

    def run(self, pipeline: Any, stack: Any, context: Mapping[str, Any] | None = None, run_id: str | None = None) -> Any:
        """Run ``pipeline`` on a stack (a name or a ResolvedStack), with observer hooks."""
        from flowyml_core.pipeline import run_on_stack

        resolved = self.resolve(stack) if isinstance(stack, str) else stack
        return run_on_stack(pipeline, resolved, context=context, run_id=run_id, registry=self.registry())


def close_component(component: Any) -> None:
    """Release what a component holds (a cluster, a connection) when it offers ``close()``."""
    close = getattr(component, "close", None)
    if callable(close):
        close()
