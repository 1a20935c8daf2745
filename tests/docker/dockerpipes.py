"""Pipelines the docker executor tests run in containers (copied into each test project).

Every test project is built into an image from a directory holding this
file, so the units import it as ``dockerpipes`` there.
"""

from __future__ import annotations

import hashlib
import os
import time

from flowyml_core import Pipeline, ResourceConfig, step


@step(outputs=["n"])
def source(size: int) -> int:
    return size


@step(inputs=["n"], outputs=["total"])
def total(n: int) -> int:
    return sum(range(n))


chain = Pipeline("chain", [source, total], context={"size": 3})


@step(outputs=["blob"], resources=ResourceConfig(memory="64Mi"))
def hog() -> int:
    data = bytearray(512 * 2**20)  # touched page by page, far over the limit
    for i in range(0, len(data), 4096):
        data[i] = 1
    return len(data)


oom = Pipeline("oom", [hog])


@step(outputs=["x"])
def crash() -> int:
    os.write(2, b"about to exit with 7\n")  # past the step's output capture, straight to the container's log
    os._exit(7)


crashing = Pipeline("crashing", [crash])


@step(outputs=["slept"])
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@step(inputs=["slept"], outputs=["after"])
def after_nap(slept: float) -> float:
    return slept + 1


sleepy = Pipeline("sleepy", [nap, after_nap], context={"seconds": 60})


@step(outputs=["g"], resources=ResourceConfig(cpu="500m", memory="128Mi", gpu_count=2))
def gpu_step() -> int:
    return 1


gpu = Pipeline("gpu", [gpu_step])


@step(outputs=["m"])
def bad_memory() -> int:
    return 1


# Put past the step's checks on purpose ("4GB" is refused by @step, and by setting it on the step):
# the executor checks a step's resources again before it starts anything, for steps that reach it by
# another way (a third-party plugin, a pickled step).
object.__setattr__(bad_memory, "resources", {"memory": "4GB"})


bad_resources = Pipeline("bad_resources", [bad_memory])


@step(outputs=["digest", "numbers"])
def use_secret() -> tuple[str, set]:
    """The secret is in the environment (loaded from the private file); a set is pickled, hence signed."""
    return hashlib.sha256(os.environ["FLOWYML_TEST_TOKEN"].encode()).hexdigest(), {1, 2, 3}


@step(inputs=["numbers"], outputs=["count"])
def count(numbers: set) -> int:
    return len(numbers)


secretive = Pipeline("secretive", [use_secret, count])


def _independent(i: int):
    @step(outputs=[f"s{i}"], name=f"sleep{i}")
    def sleeper(pause: float) -> float:
        time.sleep(pause)
        return pause

    return sleeper


parallel = Pipeline("parallel", [_independent(i) for i in range(8)], context={"pause": 1.0})
