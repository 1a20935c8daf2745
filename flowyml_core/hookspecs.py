"""The hooks a flowyml plugin can implement.

Registration hooks use the callback style: flowyml passes ``register`` and the
plugin calls it once per flavor. Implementations and configs are given as
``"module:Name"`` strings (classes are accepted too) and imported only when a
stack that uses them is resolved, so listing plugins or stacks never imports a
cloud SDK.

Hooks are called by keyword: a plugin may declare only the arguments it uses,
and later versions may add arguments without breaking it.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("flowyml")
#: Plugins mark their hook functions with this (also ``flowyml_core.hookimpl``).
hookimpl = pluggy.HookimplMarker("flowyml")

#: ``register(name, implementation, *, config=None, summary="")``
RegisterFn = Callable[..., None]


@hookspec
def register_executors(register: RegisterFn) -> None:
    """Register executor flavors (``Executor`` or ``RemoteOrchestrator`` subclasses).

    ``register("local", "flowyml_local.executor:LocalExecutor",
    config="flowyml_local.config:LocalExecutorConfig", summary="Run steps in this process")``
    """


@hookspec
def register_cache_stores(register: RegisterFn) -> None:
    """Register cache store flavors (``CacheStore`` subclasses)."""


@hookspec
def register_artifact_stores(register: RegisterFn) -> None:
    """Register artifact store flavors (``ArtifactStore`` subclasses)."""


@hookspec
def register_routers(register: RegisterFn) -> None:
    """Register router flavors (``Router`` subclasses)."""


@hookspec
def register_materializers(register: RegisterFn) -> None:
    """Register materializers: ``register(name, "module:Class", types=("pkg.Type",), priority=0)``.

    Stores choose a materializer by the object's type; a plugin that adds a
    data type adds its safe on-disk format here. ``types`` are dotted names so
    nothing is imported to match them.
    """


@hookspec
def on_run_start(run: Any) -> None:
    """A pipeline run is starting (``run`` has run_id, pipeline_name, stack_name)."""


@hookspec
def on_step_end(run: Any, result: Any) -> None:
    """A step finished (ran, was cached, skipped or failed); ``result`` is its ExecutionResult."""


@hookspec
def on_run_end(run: Any, result: Any) -> None:
    """A run finished; ``result`` is the RunResult (or the SubmissionResult of a remote run)."""
