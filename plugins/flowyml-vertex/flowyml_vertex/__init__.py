"""flowyml-vertex: run flowyml pipelines on Vertex AI Pipelines.

Importing this package imports no Google, KFP or Docker module: those load when
a vertex stack submits or inspects a run.
"""

__version__ = "0.1.0"
