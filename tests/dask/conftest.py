"""A real LocalCluster of worker processes, shared by the Dask tests (started once: ~1.5 s)."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("distributed")


@pytest.fixture(scope="session")
def dask_cluster():
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
        silence_logs=logging.ERROR,
        # no dashboard, and the scheduler's small HTTP server on a free loopback port (8787 may be taken)
        scheduler_kwargs={"allowed_failures": 0, "dashboard": False, "dashboard_address": "127.0.0.1:0"},
    )
    yield cluster
    cluster.close()


@pytest.fixture(scope="session")
def dask_executor(dask_cluster):
    from flowyml_dask.config import DaskExecutorConfig
    from flowyml_dask.executor import DaskExecutor

    executor = DaskExecutor(DaskExecutorConfig(address=dask_cluster.scheduler_address))
    yield executor
    executor.close()
