"""The dask executor passes the conformance kit, on a real LocalCluster (2 worker processes)."""

from __future__ import annotations

import pytest

from flowyml_core.testing import ExecutorContract


class TestDaskExecutorContract(ExecutorContract):
    flavor = "dask"

    @pytest.fixture
    def executor(self, dask_executor):
        return dask_executor

    @pytest.fixture
    def flavor_options(self, dask_cluster):
        return {"address": dask_cluster.scheduler_address}
