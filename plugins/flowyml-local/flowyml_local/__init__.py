"""flowyml-local: run pipelines in this process with on-disk cache and artifacts."""

__version__ = "0.1.0"
