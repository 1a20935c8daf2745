"""flowyml-dask: run flowyml pipelines on a dask.distributed cluster.

Importing this package imports neither dask nor distributed: they are imported
when a stack using the ``dask`` executor runs something.
"""

__version__ = "0.1.0"
