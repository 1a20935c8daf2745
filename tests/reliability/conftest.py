"""Fixtures of the reliability suite, and the switch for its long variants.

Long variants are marked ``@pytest.mark.slow`` and skipped unless
``FLOWYML_LONG=1`` is set or ``-m slow`` is given::

    FLOWYML_LONG=1 .venv/bin/python -m pytest tests/reliability -q -rs
    .venv/bin/python -m pytest tests/reliability -m slow -q -rs
"""

from __future__ import annotations

import os

import pytest

LONG_ENV = "FLOWYML_LONG"


def long_enabled(config: pytest.Config) -> bool:
    if os.environ.get(LONG_ENV, "").lower() in ("1", "true", "yes"):
        return True
    return "slow" in (config.getoption("-m", default="") or "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if long_enabled(config):
        return
    skip = pytest.mark.skip(reason=f"long variant: set {LONG_ENV}=1 or pass -m slow to run it")
    here = os.path.dirname(__file__)
    for item in items:
        if "slow" in item.keywords and str(item.fspath).startswith(here):
            item.add_marker(skip)


@pytest.fixture
def long_run(request: pytest.FixtureRequest) -> bool:
    return long_enabled(request.config)
