"""Fingerprints of values (issue 13, item 3): every numpy dtype, memoryviews, sets in a stable
order, code without a source file, and what cannot be fingerprinted."""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest

from flowyml_core.errors import UnfingerprintableError
from flowyml_core.fingerprint import LARGE_PAYLOAD, code_fingerprint, fingerprint
from tests.core.helpers import env_with


# -- numpy ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["M8[ns]", "M8[D]", "m8[s]", "m8[us]"])
def test_datetime_and_timedelta_arrays_are_fingerprinted(dtype):
    values = np.array([0, 86_400, 2 * 86_400], dtype="i8").astype(dtype)
    assert fingerprint(values) == fingerprint(values.copy())
    changed = values.copy()
    changed[1] = changed[2]
    assert fingerprint(values) != fingerprint(changed)


def test_the_unit_of_a_datetime_is_part_of_the_value():
    raw = np.arange(3, dtype="i8")
    # The same bytes mean other instants in another unit.
    assert fingerprint(raw.view("M8[D]")) != fingerprint(raw.view("M8[s]"))
    assert fingerprint(raw.view("M8[D]")) != fingerprint(raw.view("m8[D]"))
    assert fingerprint(raw.view("M8[D]")) != fingerprint(raw)


def test_structured_arrays_differ_by_field_names_offsets_and_alignment():
    plain = np.zeros(2, dtype=[("a", "i4"), ("b", "f8")])
    renamed = np.zeros(2, dtype=[("x", "i4"), ("b", "f8")])  # the very same bytes
    swapped = np.zeros(2, dtype=[("b", "f8"), ("a", "i4")])
    aligned = np.zeros(2, dtype=np.dtype([("a", "i4"), ("b", "f8")], align=True))
    titled = np.zeros(2, dtype=[(("A title", "a"), "i4"), ("b", "f8")])
    assert plain.tobytes() == renamed.tobytes()
    digests = {fingerprint(a) for a in (plain, renamed, swapped, aligned, titled)}
    assert len(digests) == 5
    assert fingerprint(plain) == fingerprint(plain.copy())


def test_subarray_fields_and_nested_records_are_described_whole():
    a = np.zeros(1, dtype=[("v", "f4", (2, 3))])
    b = np.zeros(1, dtype=[("v", "f4", (3, 2))])
    c = np.zeros(1, dtype=[("v", [("x", "f4"), ("y", "f4", (5,))])])
    d = np.zeros(1, dtype=[("v", [("x", "f4"), ("z", "f4", (5,))])])
    assert len({fingerprint(x) for x in (a, b, c, d)}) == 4


def test_object_arrays_are_fingerprinted_by_their_items():
    a = np.array([{"k": 1}, "text", None, 3.5], dtype=object)
    b = np.array([{"k": 1}, "text", None, 3.5], dtype=object)  # other objects, equal items
    c = np.array([{"k": 2}, "text", None, 3.5], dtype=object)
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)
    records = np.array([(1, {"a"}), (2, None)], dtype=[("n", "i4"), ("o", "O")])  # object field in a record
    assert fingerprint(records) == fingerprint(records.copy())


def test_shape_and_dtype_are_part_of_an_array_and_layout_is_not():
    base = np.arange(12, dtype="i4").reshape(3, 4)
    assert fingerprint(base) != fingerprint(base.reshape(4, 3))
    assert fingerprint(base) != fingerprint(base.astype("i8"))
    assert fingerprint(base) != fingerprint(base.astype(">i4"))  # byte order is in the description
    transposed = base.T  # not C-contiguous
    assert not transposed.flags.c_contiguous
    assert fingerprint(transposed) == fingerprint(np.ascontiguousarray(transposed))
    assert fingerprint(base[:, ::2]) == fingerprint(base[:, ::2].copy())
    assert fingerprint(base[:, ::2]) != fingerprint(base[:, 1::2])


def test_zero_dimensional_arrays_and_numpy_scalars():
    assert fingerprint(np.array(5)) != fingerprint(np.array([5]))
    assert fingerprint(np.float64(1.5)) == fingerprint(np.float64(1.5))
    assert fingerprint(np.float64(1.5)) != fingerprint(1.5)  # a numpy scalar is not a Python float
    assert fingerprint(np.datetime64("2024-01-01")) != fingerprint(np.datetime64("2024-01-02"))
    assert fingerprint(np.float32(1.5)) != fingerprint(np.float64(1.5))


# -- buffers ----------------------------------------------------------------------------------
def test_non_contiguous_memoryviews_are_fingerprinted_by_their_content():
    strided = memoryview(b"abcdef")[::2]
    assert not strided.c_contiguous
    assert fingerprint(strided) == fingerprint(memoryview(b"ace"))
    assert fingerprint(strided) != fingerprint(memoryview(b"bdf"))
    columns = np.arange(12, dtype="i4").reshape(3, 4)[:, ::2]  # a 2-d strided buffer
    grid = memoryview(columns)
    assert not grid.c_contiguous
    assert fingerprint(grid) == fingerprint(memoryview(columns.copy()))
    assert fingerprint(grid) != fingerprint(memoryview(np.arange(12, dtype="i4").reshape(3, 4)[:, 1::2]))


def test_memoryview_format_and_shape_are_part_of_the_value():
    data = np.arange(4, dtype="i4")
    assert fingerprint(memoryview(data)) != fingerprint(memoryview(data).cast("B"))
    assert fingerprint(memoryview(data)) != fingerprint(memoryview(data).cast("B").cast("i", (2, 2)))
    assert fingerprint(b"ace") != fingerprint(bytearray(b"ace")) != fingerprint(memoryview(b"ace"))


def test_a_released_memoryview_cannot_be_fingerprinted():
    view = memoryview(b"abc")
    view.release()
    with pytest.raises(UnfingerprintableError, match="memoryview"):
        fingerprint(view)


# -- containers -------------------------------------------------------------------------------
def test_containers_are_unambiguous():
    assert fingerprint(["ab", "c"]) != fingerprint(["a", "bc"])
    assert fingerprint([1, 2]) != fingerprint((1, 2))
    assert fingerprint({"a": 1, "b": 2}) != fingerprint({"b": 2, "a": 1})  # order is what iteration sees
    assert fingerprint(1) != fingerprint(1.0) != fingerprint(True)
    assert fingerprint(0.0) != fingerprint(-0.0)
    assert fingerprint(10**5000) != fingerprint(10**5000 + 1)  # beyond int's str() digit limit
    assert fingerprint("\ud800") != fingerprint("\ud801")  # lone surrogates are values too
    assert fingerprint({1, 2}) != fingerprint(frozenset({1, 2})) != fingerprint([1, 2])


def test_a_list_that_contains_itself_cannot_be_fingerprinted():
    a: list = [1]
    a.append(a)
    with pytest.raises(UnfingerprintableError, match="contains itself"):
        fingerprint({"rows": a})


def test_equal_values_have_equal_fingerprints_however_their_parts_are_shared():
    row = ["x" * 3, [1.5, 2]]
    shared = {"a": row, "b": row}
    separate = {"a": ["x" * 3, [1.5, 2]], "b": ["xxx", [1.5, 2]]}
    assert fingerprint(shared) == fingerprint(separate)
    assert fingerprint(Holder({"a", "b"})) == fingerprint(Holder({"b", "a"}))


SET_SCRIPT = """
import pickle, sys
from flowyml_core.fingerprint import fingerprint
values = pickle.loads(sys.stdin.buffer.read())
print("\\n".join(fingerprint(v) for v in values))
"""


def fingerprints_in_another_process(values: list, seed: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", SET_SCRIPT], input=pickle.dumps(values), capture_output=True, check=True,
        env=env_with(PYTHONHASHSEED=seed),
    )
    return out.stdout.decode().split()


class Holder:
    """An object fingerprinted through pickle, holding a set."""

    def __init__(self, tags: set[str]) -> None:
        self.tags = tags


def test_sets_of_strings_have_the_same_fingerprint_in_every_process():
    words = {f"word-{i}" for i in range(50)}
    values = [words, frozenset(words), {"nested": [words]}, Holder(words), np.array([words], dtype=object)]
    ours = [fingerprint(v) for v in values]
    assert fingerprints_in_another_process(values, "1") == ours
    assert fingerprints_in_another_process(values, "2") == ours


# -- large payloads -------------------------------------------------------------------------------
LARGE = LARGE_PAYLOAD + 4096  # past the size from which a payload enters the key as a digest


@pytest.mark.parametrize("offset", [0, LARGE // 2, LARGE - 1])
def test_one_changed_byte_anywhere_in_a_large_payload_changes_the_fingerprint(offset):
    data = bytearray(np.random.default_rng(7).bytes(LARGE))
    original = [fingerprint(bytes(data)), fingerprint(np.frombuffer(bytes(data), "u1")),
                fingerprint(memoryview(bytes(data))), fingerprint({"payload": bytes(data)})]
    data[offset] ^= 1
    changed = [fingerprint(bytes(data)), fingerprint(np.frombuffer(bytes(data), "u1")),
               fingerprint(memoryview(bytes(data))), fingerprint({"payload": bytes(data)})]
    assert all(a != b for a, b in zip(original, changed))


def test_large_memoryviews_of_any_format_and_shape_are_fingerprinted_by_content():
    grid = np.arange(LARGE // 8 * 2, dtype="f8").reshape(2, -1)  # a 2-d view of doubles, 2 MiB
    assert fingerprint(memoryview(grid)) == fingerprint(memoryview(grid.copy()))
    assert fingerprint(memoryview(grid)[::2]) == fingerprint(memoryview(grid[::2].copy()))  # strided, 1 MiB
    changed = grid.copy()
    changed[1, -1] += 1
    assert fingerprint(memoryview(grid)) != fingerprint(memoryview(changed))
    assert fingerprint(memoryview(grid)) != fingerprint(memoryview(grid.reshape(4, -1)))  # shape is in the value


def test_payloads_on_both_sides_of_the_large_size_are_told_apart():
    small = b"x" * (LARGE_PAYLOAD - 1)
    large = b"x" * LARGE_PAYLOAD
    assert len({fingerprint(small), fingerprint(large), fingerprint(large + b"x")}) == 3


def test_large_payloads_have_the_same_fingerprint_in_another_process():
    rng = np.random.default_rng(3)
    big = rng.random((1100, 1000))  # 8.8 MB: hashed on one thread
    huge = rng.integers(0, 255, 17 << 20, dtype="u1")  # 17 MiB: hashed across the cores
    values = [big, big[:, ::2], huge, huge.tobytes(), {"model": big}]
    assert fingerprints_in_another_process(values, "5") == [fingerprint(v) for v in values]
    # a memoryview cannot be pickled over; its content is that of the bytes, tagged as a view
    assert fingerprint(memoryview(huge)) == fingerprint(memoryview(huge.tobytes()))
    assert fingerprint(memoryview(huge)) != fingerprint(huge.tobytes())


# -- what cannot be fingerprinted ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "type_name"),
    [(threading.Lock(), "_thread.lock"), ((x for x in ()), "generator"), (lambda: 1, "function")],
)
def test_what_cannot_be_fingerprinted_raises_naming_its_type(value, type_name):
    with pytest.raises(UnfingerprintableError) as info:
        fingerprint(value)
    assert info.value.type_name == type_name
    assert "0x" not in str(info.value)  # never an address


def test_something_unfingerprintable_inside_a_container_names_the_inner_type():
    with pytest.raises(UnfingerprintableError) as info:
        fingerprint({"ok": 1, "lock": threading.Lock()})
    assert info.value.type_name == "_thread.lock"
    with pytest.raises(UnfingerprintableError) as info:
        fingerprint([Holder({1}), Holder(x for x in ())])
    assert info.value.type_name == "generator"


# -- code without a source file -------------------------------------------------------------------
LAMBDA_SOURCE = "def f(rows):\n    key = lambda r: r[{k}]\n    return sorted(rows, key=key) + [x * 2 for x in rows]\n"


def _exec_function(source: str):
    namespace: dict = {"__name__": "generated"}
    exec(compile(source, "<generated>", "exec", dont_inherit=True), namespace)  # no __future__ flags from here
    return namespace["f"]


def test_code_without_source_is_keyed_by_bytecode_and_constants_recursively():
    f1, f2 = _exec_function(LAMBDA_SOURCE.format(k=0)), _exec_function(LAMBDA_SOURCE.format(k=0))
    other = _exec_function(LAMBDA_SOURCE.format(k=1))  # differs only inside the nested lambda
    assert f1 is not f2 and f1.__code__ is not f2.__code__
    assert code_fingerprint(f1) == code_fingerprint(f2)
    assert code_fingerprint(f1) != code_fingerprint(other)


CODE_SCRIPT = """
from flowyml_core.fingerprint import code_fingerprint
namespace = {"__name__": "generated"}
exec(compile(%r, "<generated>", "exec", dont_inherit=True), namespace)
print(code_fingerprint(namespace["f"]))
"""


def test_code_without_source_has_the_same_fingerprint_in_another_process():
    here = code_fingerprint(_exec_function(LAMBDA_SOURCE.format(k=0)))
    out = subprocess.run([sys.executable, "-c", CODE_SCRIPT % LAMBDA_SOURCE.format(k=0)], capture_output=True,
                         text=True, check=True, env=env_with(PYTHONHASHSEED="7"))
    assert out.stdout.strip() == here
