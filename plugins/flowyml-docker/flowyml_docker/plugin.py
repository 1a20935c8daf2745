"""Registration of the ``docker`` executor flavor.

Only strings are registered: the executor and its config are imported when a
stack that uses them is resolved, so ``flowyml plugins`` and ``flowyml stack
list`` never import the docker SDK.
"""

from flowyml_core import hookimpl

FLOWYML_API_VERSION = "1.0"


@hookimpl
def register_executors(register):
    register(
        "docker",
        "flowyml_docker.executor:DockerExecutor",
        config="flowyml_docker.config:DockerExecutorConfig",
        summary="Run each execution unit in its own container on a Docker engine",
    )
