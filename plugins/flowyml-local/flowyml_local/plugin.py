"""Registration of the local components: the same path third-party plugins use.

Nothing is imported here beyond flowyml_core's hook marker: the components are
named by ``"module:Name"`` and imported when a stack uses them.
"""

from flowyml_core import hookimpl

FLOWYML_API_VERSION = "1.0"


@hookimpl
def register_executors(register):
    register(
        "local",
        "flowyml_local.executor:LocalExecutor",
        config="flowyml_local.executor:LocalExecutorConfig",
        summary="Run steps in this process (optionally independent units in threads)",
    )


@hookimpl
def register_cache_stores(register):
    register(
        "local",
        "flowyml_local.cache_store:LocalCacheStore",
        config="flowyml_local.cache_store:LocalCacheStoreConfig",
        summary="Step results on a filesystem path (any fsspec URL), atomic writes",
    )


@hookimpl
def register_artifact_stores(register):
    register(
        "local",
        "flowyml_local.artifact_store:LocalArtifactStore",
        config="flowyml_local.artifact_store:LocalArtifactStoreConfig",
        summary="Step outputs on a filesystem path (any fsspec URL), safe formats first",
    )


@hookimpl
def register_routers(register):
    register(
        "type",
        "flowyml_local.router:TypeRouter",
        config="flowyml_local.router:TypeRouterConfig",
        summary="Send outputs to a store, path and format chosen by their type",
    )


@hookimpl
def register_materializers(register):
    # Safe formats first (priority 10); pickle is the fallback for any object.
    # Stores pick by type, then by can_save(): e.g. a tuple or a dict with
    # non-string keys is not exact JSON and falls through to pickle.
    # See flowyml_local/materializers.py for the protocol.
    register("json", "flowyml_local.materializers:JsonMaterializer",
             types=("builtins.dict", "builtins.list", "builtins.str", "builtins.int", "builtins.float",
                    "builtins.bool", "builtins.NoneType"), priority=10)
    register("bytes", "flowyml_local.materializers:BytesMaterializer", types=("builtins.bytes", "builtins.bytearray"), priority=10)
    register("npy", "flowyml_local.materializers:NumpyMaterializer", types=("numpy.ndarray",), priority=10)
    register("parquet", "flowyml_local.materializers:ParquetMaterializer", types=("pandas.DataFrame", "pandas.core.frame.DataFrame"), priority=10)
    register("pickle", "flowyml_local.materializers:PickleMaterializer", types=("builtins.object",), priority=-100)


@hookimpl
def on_run_end(run, result):
    # One line per run for cache entries refused because of their signature (a
    # signing key that changed), instead of a warning per entry. Nothing to say
    # when no store of this plugin was used: then its module is not even loaded.
    import sys

    stores = sys.modules.get("flowyml_local.fsstore")
    if stores is not None:
        stores.report_untrusted()
