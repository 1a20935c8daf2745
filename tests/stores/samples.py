"""One sample value per materializer, and how to compare what a store gives back: shared by the bucket stores' tests."""

from __future__ import annotations

from typing import Any

import pytest

np = pytest.importorskip("numpy")

MATERIALIZERS = ["json", "bytes", "npy", "parquet", "pickle"]


class Model:
    """A plain object: stored by the pickle materializer."""

    def __init__(self, weights):
        self.weights = weights

    def __eq__(self, other):
        return isinstance(other, Model) and other.weights == self.weights


def sample(materializer: str) -> Any:
    if materializer == "parquet":
        pd = pytest.importorskip("pandas")
        pytest.importorskip("pyarrow")
        return pd.DataFrame({"x": [1, 2], "y": ["a", "b"]})
    return {
        "json": {"a": [1, 2.5, None, "x"]},
        "bytes": b"\x00raw\xff",
        "npy": np.arange(24, dtype="float32").reshape(4, 6),
        "pickle": Model([0.1, 0.2]),
    }[materializer]


def assert_same(got: Any, value: Any, materializer: str) -> None:
    """``got`` is ``value`` as its materializer gives it back: equal, and of the same type."""
    if materializer == "npy":
        np.testing.assert_array_equal(got, value)
    elif materializer == "parquet":
        import pandas as pd

        pd.testing.assert_frame_equal(got, value)
    else:
        assert got == value and type(got) is type(value)
