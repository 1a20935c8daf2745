"""flowyml-sagemaker: run flowyml pipelines on Amazon SageMaker Pipelines.

Importing this package imports no boto3, botocore or Docker module: those load
when a sagemaker stack submits or inspects a run.
"""

__version__ = "0.1.0"
