"""The conformance kit's own tests: pytester runs the kit against broken components to prove it can fail."""

try:  # pytester's in-process runs unload modules imported inside them; numpy cannot be imported twice
    import numpy  # noqa: F401
except ImportError:  # pragma: no cover - numpy is in requirements-dev.txt
    pass
# pytester is enabled in tests/conftest.py (pytest allows pytest_plugins only there).
