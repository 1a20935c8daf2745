"""Registration of the ``kubernetes`` executor flavor.

Only strings are registered: the orchestrator and its config are imported when
a stack that uses them is resolved, so ``flowyml plugins`` and ``flowyml stack
list`` never import the ``kubernetes`` client.
"""

from flowyml_core import hookimpl

FLOWYML_API_VERSION = "1.0"


@hookimpl
def register_executors(register):
    register(
        "kubernetes",
        "flowyml_kubernetes.orchestrator:KubernetesOrchestrator",
        config="flowyml_kubernetes.config:KubernetesConfig",
        summary="Run pipelines on Kubernetes: an orchestrator Job walks the DAG, one Job per execution unit",
    )
