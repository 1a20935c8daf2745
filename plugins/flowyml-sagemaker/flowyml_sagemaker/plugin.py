"""Registration of the ``sagemaker`` executor flavor.

Only strings are registered: the orchestrator and its config are imported when
a stack that uses them is resolved, so ``flowyml plugins`` and ``flowyml stack
list`` never pay for (or depend on) boto3.
"""

from flowyml_core import hookimpl

FLOWYML_API_VERSION = "1.0"


@hookimpl
def register_executors(register):
    register(
        "sagemaker",
        "flowyml_sagemaker.orchestrator:SageMakerOrchestrator",
        config="flowyml_sagemaker.config:SageMakerConfig",
        summary="Submit pipelines to Amazon SageMaker Pipelines (one Processing step per execution unit)",
    )
