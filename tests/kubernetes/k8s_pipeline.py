"""A pipeline for the Kubernetes tests: a group, two independent units, a join.

Units, in order: ``prep`` (load → clean), ``left`` and ``right`` (independent:
they may run at once), ``join`` (reads both). Parameters:

* ``factor``: scales the data (only ``load`` takes it, so changing it re-runs
  everything downstream of ``load``);
* ``offset``: only ``right`` takes it (changing it re-runs ``right`` and ``join``);
* ``explode``: ``left`` raises, so a failing unit can be observed;
* ``sleep_seconds``: ``right`` sleeps first, so a run can be stopped while it runs.

Kept to the standard library: every unit starts a fresh ``flowyml step-runner``.
"""

from __future__ import annotations

import time

from flowyml_core import Context, Pipeline, ResourceConfig, step


@step(outputs=["raw"], execution_group="prep")
def load(factor: int) -> list[int]:
    print(f"loading with factor {factor}")
    return [i * factor for i in range(1, 6)]


@step(inputs=["raw"], outputs=["clean"], execution_group="prep")
def clean(raw: list[int]) -> list[int]:
    return [x for x in raw if x % 2 == 0 or x > 6]


@step(inputs=["clean"], outputs=["total"], resources=ResourceConfig(cpu="500m", memory="256Mi"))
def left(clean: list[int], explode: bool) -> int:
    if explode:
        raise RuntimeError("left exploded on purpose")
    return sum(clean)


@step(inputs=["clean"], outputs=["shifted"])
def right(clean: list[int], offset: int, sleep_seconds: float) -> list[int]:
    if sleep_seconds:
        time.sleep(sleep_seconds)
    return [x + offset for x in clean]


@step(inputs=["total", "shifted"], outputs=["report"])
def join(total: int, shifted: list[int]) -> dict:
    return {"total": total, "shifted": shifted}


pipeline = Pipeline(
    "k8s-test",
    steps=[load, clean, left, right, join],
    context=Context(factor=3, offset=0, explode=False, sleep_seconds=0.0),
)
