"""Registration of the ``dask`` executor flavor, through the public plugin API only."""

from flowyml_core import hookimpl

#: The flowyml plugin API this plugin was written for.
FLOWYML_API_VERSION = "1.0"


@hookimpl
def register_executors(register):
    register(
        "dask",
        "flowyml_dask.executor:DaskExecutor",
        config="flowyml_dask.config:DaskExecutorConfig",
        summary="Run independent steps in parallel on a Dask cluster (a LocalCluster by default)",
    )
