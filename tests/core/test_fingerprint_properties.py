"""Property tests of fingerprints (issue 13): equal values give equal fingerprints in another
process (another PYTHONHASHSEED), and values that differ in any one part give different ones."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
from typing import Any, Iterator

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from flowyml_core.fingerprint import fingerprint
from tests.core.helpers import env_with

hashable_leaves = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.complex_numbers() | st.text(max_size=8)
    | st.binary(max_size=8)
)
hashables = st.recursive(
    hashable_leaves, lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3), max_leaves=6
)
dtypes = (
    hnp.scalar_dtypes() | hnp.array_dtypes(allow_subarrays=True) | hnp.nested_dtypes(max_itemsize=64)
    | hnp.datetime64_dtypes() | hnp.timedelta64_dtypes()
)
arrays = hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, max_side=3))
leaves = hashables | st.sets(hashables, max_size=4) | st.binary(max_size=8).map(bytearray) | arrays
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)

SCRIPT = """
import pickle, sys
from flowyml_core.fingerprint import fingerprint
print("\\n".join(fingerprint(v) for v in pickle.loads(sys.stdin.buffer.read())))
"""


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batch=st.lists(values, min_size=1, max_size=6), seed=st.integers(0, 2**32 - 1))
def test_equal_values_have_equal_fingerprints_in_another_process(batch: list[Any], seed: int) -> None:
    data = pickle.dumps(batch)
    # Both sides fingerprint what unpickling gives (numpy unpickles some arrays in native byte
    # order, another dtype); the other process rebuilds sets with its own string hashing.
    here = [fingerprint(v) for v in pickle.loads(data)]
    out = subprocess.run([sys.executable, "-c", SCRIPT], input=data, capture_output=True, check=True,
                         env=env_with(PYTHONHASHSEED=str(seed)))
    assert out.stdout.decode().split() == here


def variants(value: Any) -> Iterator[Any]:
    """Values that differ from ``value`` in exactly one part (a leaf, a type, a length, a name)."""
    kind = type(value)
    if value is None:
        yield 0
    elif kind is bool:
        yield not value
        yield int(value)
    elif kind is int:
        yield value + 1
        yield float(value) if abs(value) < 2**53 else str(value)
    elif kind is float:
        yield math.nextafter(value, math.inf) if math.isfinite(value) else (1.0 if math.isnan(value) else -value)
        yield complex(value)
    elif kind is complex:
        yield str(value)
    elif kind in (str, bytes, bytearray):
        yield value + (kind("x") if kind is str else b"x")
        yield value.encode("utf-8", "surrogatepass") if kind is str else str(value)
    elif kind in (list, tuple):
        yield kind([*value, None])
        yield (tuple if kind is list else list)(value)
        if value:
            yield kind(value[:-1])
        for i, item in enumerate(value):
            for changed in variants(item):
                yield kind([*value[:i], changed, *value[i + 1:]])
    elif kind is dict:
        yield {**value, "\x00new": None}
        for key in value:
            yield {k: v for k, v in value.items() if k != key}
            renamed = key + "\x01"
            if renamed not in value:
                yield {(renamed if k == key else k): v for k, v in value.items()}
            for changed in variants(value[key]):
                yield {**value, key: changed}
    elif kind in (set, frozenset):
        yield (frozenset if kind is set else set)(value)
        extra = ("\x00not-there",)
        yield kind(value | {extra})
        for item in value:
            yield kind(value - {item})
    elif kind is np.ndarray:
        yield from array_variants(value)
    else:
        raise AssertionError(f"no variants for {kind}")


def array_variants(array: np.ndarray) -> Iterator[np.ndarray]:
    if array.ndim != 1:
        yield array.reshape(-1)
    yield np.concatenate([array.reshape(-1), array.reshape(-1)[:1]]) if array.size else np.zeros(1, array.dtype)
    if array.dtype.names:
        renamed = list(array.dtype.names)
        renamed[0] = renamed[0] + "_"
        if renamed[0] not in array.dtype.names:
            yield array.view(array.dtype).copy().view(np.dtype({"names": renamed, "formats": [
                array.dtype.fields[n][0] for n in array.dtype.names], "offsets": [array.dtype.fields[n][1] for n in
                array.dtype.names], "itemsize": array.dtype.itemsize}))
    elif array.dtype.itemsize == 8 and array.dtype.kind in "iuMm":
        yield array.view("f8" if array.dtype.kind != "f" else "i8")  # same bytes, another meaning
    if array.size and array.dtype.itemsize and not array.dtype.hasobject:
        flipped = np.ascontiguousarray(array).copy()
        raw = flipped.reshape(-1).view(np.uint8)
        raw[0] ^= 1
        yield flipped


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(value=values)
def test_values_that_differ_in_any_part_have_different_fingerprints(value: Any) -> None:
    original = fingerprint(value)
    for changed in variants(value):
        assert fingerprint(changed) != original, (value, changed)
