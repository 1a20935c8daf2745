"""Registration only: nothing here imports the components (they load on use).

The observer hooks append one JSON line per event to the file named by
``FLOWYML_TESTPLUGIN_EVENTS`` (when set), so tests running the real CLI can see
that the hooks were called, and with which arguments.
"""

from __future__ import annotations

import json
import os

from flowyml_core import hookimpl

FLOWYML_API_VERSION = "1.0"


@hookimpl
def register_executors(register):
    register(
        "echo",
        "flowyml_testplugin.components:EchoExecutor",
        config="flowyml_testplugin.components:EchoExecutorConfig",
        summary="Run steps in this process and announce each one (implements only execute_step)",
    )


@hookimpl
def register_cache_stores(register):
    register(
        "memory",
        "flowyml_testplugin.components:MemoryCacheStore",
        config="flowyml_testplugin.components:MemoryCacheStoreConfig",
        summary="Step results in a dict (this process only)",
    )


@hookimpl
def register_artifact_stores(register):
    register(
        "pickledir",
        "flowyml_testplugin.components:PickleDirArtifactStore",
        config="flowyml_testplugin.components:PickleDirArtifactStoreConfig",
        summary="Pickles in a directory (tests only: pickle is not safe for untrusted data)",
    )


@hookimpl
def register_routers(register):
    # A class object instead of a "module:Name" string, and no config: both allowed.
    from flowyml_testplugin.router import NullRouter

    register("null", NullRouter, summary="Routes nothing")


def _record(event: str, **fields) -> None:
    path = os.environ.get("FLOWYML_TESTPLUGIN_EVENTS")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"event": event, **fields}, sort_keys=True) + "\n")


# Observer hooks declare only the arguments they use: pluggy calls by keyword.
@hookimpl
def on_run_start(run):
    _record("run_start", run_id=run.run_id, pipeline=run.pipeline_name, stack=run.stack_name)


@hookimpl
def on_step_end(result):
    _record("step_end", step=result.step_name, success=result.success, cached=result.cached,
            skipped=result.skipped)


@hookimpl
def on_run_end(run, result):
    _record("run_end", run_id=run.run_id, status=getattr(getattr(result, "status", None), "value", None))
