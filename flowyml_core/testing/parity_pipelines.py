"""The pipelines of the stack parity contract (:mod:`flowyml_core.testing.parity`).

Module-level pipelines of module-level steps, so that any executor can import
them again where its units run (``flowyml_core.testing.parity_pipelines:chain``
in a container, a worker, a pod). They use plain values only, so every
artifact and cache entry is written in a safe format and no signing key has to
be shared with the units; the routed output is a ``dict`` subclass the kit's
router rule sends to its own store as JSON.

Each run passes ``token`` (a fresh string): the flaky step fails on the first
attempt of every run, in whatever process it runs.
"""

from __future__ import annotations

from flowyml_core.pipeline import Pipeline
from flowyml_core.step import step

#: Attempts of the flaky step per run token, in this process.
_ATTEMPTS: dict[str, int] = {}


class Routed(dict):
    """An output the kit's router rule (``type = "Routed"``) stores apart from the artifact store."""


# -- a chain, and run parameters ----------------------------------------------------------------
@step(outputs=["numbers"])
def numbers(size: int = 4):
    return list(range(size))


@step(inputs=["numbers"], outputs=["total"])
def total(numbers, scale: int = 1):
    return sum(numbers) * scale


@step(inputs=["total"], outputs=["summary"])
def summary(total, label: str = "total"):
    return {"label": label, "value": total}


chain = Pipeline("parity-chain", [numbers, total, summary], context={"size": 4, "scale": 1, "label": "total"})


# -- a diamond --------------------------------------------------------------------------------------
@step(outputs=["seed"])
def seed():
    return 3


@step(inputs=["seed"], outputs=["left"])
def left(seed):
    return seed + 1


@step(inputs=["seed"], outputs=["right"])
def right(seed):
    return seed * 10


@step(inputs=["left", "right"], outputs=["joined"])
def join(left, right):
    return [left, right]


diamond = Pipeline("parity-diamond", [seed, left, right, join])


# -- a group: inputs mapped by name and by position, fan-out from a tuple and a dict --------------
@step(outputs=["a", "b"], execution_group="together")
def split_pair():
    return 2, 5


@step(inputs=["a", "b"], outputs=["stats"], execution_group="together")
def by_position(first, second):  # no parameter is named like an input: mapped by position
    return {"low": min(first, second), "high": max(first, second)}


@step(inputs=["stats", "b"], outputs=["low", "high"], execution_group="together")
def by_name(b, stats):  # parameters named like the inputs, in another order
    return {"low": stats["low"] * b, "high": stats["high"] * b}


@step(inputs=["low", "high"], outputs=["spread"])
def spread(low, high):
    return high - low


group = Pipeline("parity-group", [split_pair, by_position, by_name, spread])


# -- a None output, and a routed one ---------------------------------------------------------------
@step(outputs=["nothing"])
def nothing():
    return None


@step(inputs=["nothing"], outputs=["was_none"])
def check_none(nothing):
    return nothing is None


@step(outputs=["routed"])
def routed():
    return Routed(kind="routed", values=[1, 2, 3])


@step(inputs=["routed"], outputs=["routed_sum"])
def use_routed(routed):
    return sum(routed["values"])


none_and_routed = Pipeline("parity-none-routed", [nothing, check_none, routed, use_routed])


# -- a condition that is false ----------------------------------------------------------------------
@step(outputs=["base"])
def base():
    return 7


@step(inputs=["base"], outputs=["deployed"], condition=lambda deploy: deploy)
def deploy_model(base):
    return base * 2


@step(inputs=["deployed"], outputs=["notified"])
def notify(deployed):
    return f"deployed {deployed}"


@step(inputs=["base"], outputs=["kept"])
def keep(base):
    return base


condition = Pipeline("parity-condition", [base, deploy_model, notify, keep], context={"deploy": False})


# -- a retry that then succeeds -------------------------------------------------------------------------
@step(outputs=["flaky_value"], retry=2, retry_delay=0.0)
def flaky(token: str = ""):
    _ATTEMPTS[token] = _ATTEMPTS.get(token, 0) + 1
    if _ATTEMPTS[token] == 1:
        raise ConnectionError("first attempt fails")
    return "succeeded"


@step(inputs=["flaky_value"], outputs=["flaky_echo"])
def echo_flaky(flaky_value):
    return flaky_value.upper()


retry = Pipeline("parity-retry", [flaky, echo_flaky])


# -- a failure that skips what is downstream --------------------------------------------------------
@step(outputs=["broken"])
def breaks():
    raise ValueError("this step always fails")


@step(inputs=["broken"], outputs=["after_broken"])
def after_break(broken):
    return broken


@step(inputs=["after_broken"], outputs=["further"])
def further(after_broken):
    return after_broken


@step(outputs=["independent"])
def independent():
    return "ran"


failure = Pipeline("parity-failure", [breaks, after_break, further, independent])


# -- a step that changes a shared input in place ------------------------------------------------
@step(outputs=["rows"])
def rows():
    return [3, 1, 2]


@step(inputs=["rows"], outputs=["smallest"])
def smallest(rows):
    rows.sort()  # a mistake users make: every unit on a remote stack gets its own copy, so it changes no other's
    return rows[0]


@step(inputs=["rows", "smallest"], outputs=["as_read"])
def as_read(rows, smallest):
    return {"rows": list(rows), "smallest": smallest}


in_place = Pipeline("parity-in-place", [rows, smallest, as_read])


#: Every pipeline of the contract, by the name its test uses.
PIPELINES = {
    "chain": chain,
    "diamond": diamond,
    "group": group,
    "none_and_routed": none_and_routed,
    "condition": condition,
    "retry": retry,
    "failure": failure,
    "in_place": in_place,
}
