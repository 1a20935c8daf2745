"""Pytest fixtures for the fake Kubernetes API server (tests/servers/fake_kubernetes.py).

Loaded once for the whole suite by ``pytest_plugins`` in tests/conftest.py; use
the fixtures by name. Pod processes start from a minimal environment (never
the test's ``os.environ``): ``default_base_env`` (shared with the other fakes) unless a test says more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from .fake_kubernetes import FakeKubernetes
from .vertex_fixtures import started_fakes


@pytest.fixture
def fake_kubernetes_factory(tmp_path: Path) -> Iterator[Callable[..., FakeKubernetes]]:
    """Start fakes with custom options (``base_env`` merged over ``default_base_env``); all stop at teardown."""
    yield from started_fakes(FakeKubernetes, tmp_path)


@pytest.fixture
def fake_kubernetes(fake_kubernetes_factory: Callable[..., FakeKubernetes]) -> FakeKubernetes:
    """A started fake API server with the ``default`` namespace, running pods in tmp_path."""
    return fake_kubernetes_factory()
