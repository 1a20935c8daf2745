"""Registration of the ``vertex`` executor flavor.

Only strings are registered: the orchestrator and its config are imported when
a stack that uses them is resolved, so ``flowyml plugins`` and ``flowyml stack
list`` never pay for (or depend on) the Google SDKs.
"""

from flowyml_core import hookimpl

FLOWYML_API_VERSION = "1.0"


@hookimpl
def register_executors(register):
    register(
        "vertex",
        "flowyml_vertex.orchestrator:VertexAIOrchestrator",
        config="flowyml_vertex.config:VertexConfig",
        summary="Submit pipelines to Vertex AI Pipelines (one container per execution unit)",
    )
