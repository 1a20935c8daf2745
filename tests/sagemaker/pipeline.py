"""A pipeline with a step group and two standalone steps, for the SageMaker tests.

Units, in order: ``prep`` (load → clean), ``fit`` (standalone, with resources),
``report`` (standalone, reads outputs of both). Parameters:

* ``factor``: scales the data, so outputs prove the run parameters arrived;
* ``explode``: ``fit`` raises, so a failing step can be observed;
* ``sleep_seconds``: ``load`` sleeps first, so a run can be stopped while it runs.

Kept to the standard library: every unit starts a fresh ``flowyml step-runner``.
"""

from __future__ import annotations

import logging
import time

from flowyml_core import Context, Pipeline, ResourceConfig, step

log = logging.getLogger("tests.sagemaker.pipeline")


@step(outputs=["raw"], execution_group="prep")
def load(factor: int, sleep_seconds: float) -> list[int]:
    if sleep_seconds:
        log.info("load sleeps %ss", sleep_seconds)
        time.sleep(sleep_seconds)
    print(f"loading with factor {factor}")
    return [i * factor for i in range(1, 6)]


@step(inputs=["raw"], outputs=["clean"], execution_group="prep")
def clean(raw: list[int]) -> list[int]:
    return [x for x in raw if x % 2 == 0 or x > 6]


@step(inputs=["clean"], outputs=["model"], resources=ResourceConfig(cpu="8", memory="30Gi", disk_size="100Gi"))
def fit(clean: list[int], explode: bool) -> dict:
    if explode:
        raise RuntimeError("fit exploded on purpose")
    print("fitting the model")
    return {"mean": sum(clean) / len(clean), "n": len(clean)}


@step(inputs=["model", "raw"], outputs=["report"])
def report(model: dict, raw: list[int]) -> dict:
    return {"score": model["mean"] / max(raw), "n_raw": len(raw)}


pipeline = Pipeline("sm-multi-unit", steps=[load, clean, fit, report],
                    context=Context(factor=3, explode=False, sleep_seconds=0.0))
