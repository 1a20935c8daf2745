"""Pytest fixtures for the fake SageMaker Pipelines + CloudWatch Logs server (tests/servers/fake_sagemaker.py).

Loaded for the whole suite by ``pytest_plugins`` in tests/conftest.py:

function scope:
    ``fake_sagemaker_factory``  builds started fakes with options (``base_env``, ``image_map``, ...),
                                all stopped at teardown; ``workdir`` defaults to ``tmp_path`` and
                                ``base_env`` to a minimal env (this interpreter's bin on PATH, a
                                private HOME), with any given ``base_env`` on top.
    ``fake_sagemaker``          one started fake with the defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.servers.fake_sagemaker import FakeSageMaker
from tests.servers.vertex_fixtures import started_fakes

__all__ = ["fake_sagemaker", "fake_sagemaker_factory"]


@pytest.fixture
def fake_sagemaker_factory(tmp_path: Path) -> Iterator[Callable[..., FakeSageMaker]]:
    yield from started_fakes(FakeSageMaker, tmp_path)


@pytest.fixture
def fake_sagemaker(fake_sagemaker_factory: Callable[..., FakeSageMaker]) -> FakeSageMaker:
    return fake_sagemaker_factory()
