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
from typing import Any, Callable, Iterator

import pytest

from tests.servers.fake_sagemaker import FakeSageMaker
from tests.servers.vertex_fixtures import default_base_env

__all__ = ["fake_sagemaker", "fake_sagemaker_factory"]


@pytest.fixture
def fake_sagemaker_factory(tmp_path: Path) -> Iterator[Callable[..., FakeSageMaker]]:
    started: list[FakeSageMaker] = []

    def make(**options: Any) -> FakeSageMaker:
        options.setdefault("workdir", tmp_path)
        options["base_env"] = {**default_base_env(tmp_path), **(options.get("base_env") or {})}
        fake = FakeSageMaker(**options).start()
        started.append(fake)
        return fake

    yield make
    for fake in reversed(started):
        fake.stop()


@pytest.fixture
def fake_sagemaker(fake_sagemaker_factory: Callable[..., FakeSageMaker]) -> FakeSageMaker:
    return fake_sagemaker_factory()
