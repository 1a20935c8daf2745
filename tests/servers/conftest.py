# Server fixtures for the tests in this directory.  When the root tests/conftest.py
# loads them with `pytest_plugins = ["tests.servers.fixtures"]` (imported before
# this file), importing them again here would define a second copy of each
# session fixture (a second emulator / dockerd), so only import when absent.
import sys

if "tests.servers.fixtures" not in sys.modules:
    from tests.servers.fixtures import *  # noqa: F401,F403
