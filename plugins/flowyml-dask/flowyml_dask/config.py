"""Options of the ``dask`` executor flavor (no dask import here: ``flowyml stack show`` reads this)."""

from __future__ import annotations

from typing import Any

import attrs


def _positive_or_none(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an integer >= 1, got {value!r}")


def _not_negative(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{attribute.name} must be a number >= 0, got {value!r}")


@attrs.define(frozen=True)
class DaskExecutorConfig:
    """How to reach (or start) the cluster.

    ``address``: an existing scheduler, e.g. ``"tcp://10.0.0.5:8786"``. Without
    it the executor starts a ``LocalCluster`` of worker processes on this
    machine (on 127.0.0.1) the first time it runs something, and closes it when
    the executor is closed or the program ends.
    ``n_workers`` / ``threads_per_worker``: size of that LocalCluster
    (``n_workers`` defaults to Dask's choice for this machine; one thread per
    worker by default, because most steps hold the GIL).
    ``allowed_failures``: how many times the LocalCluster's scheduler re-runs a
    task whose worker died before giving up; 0 (the default) reports the step
    as failed at once: a step that kills its worker usually does so every time,
    and steps have their own ``retry``.
    ``connect_timeout``: seconds to wait for the scheduler at ``address``.
    """

    address: str | None = None
    n_workers: int | None = attrs.field(default=None, validator=_positive_or_none)
    threads_per_worker: int | None = attrs.field(default=1, validator=_positive_or_none)
    allowed_failures: int = attrs.field(default=0, validator=_not_negative)
    connect_timeout: float = attrs.field(default=10.0, validator=_not_negative)
    dashboard_address: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.address is not None:
            if not isinstance(self.address, str) or not self.address.strip():
                raise ValueError(f"address must be a scheduler address like 'tcp://host:8786', got {self.address!r}")
            if self.n_workers is not None:
                raise ValueError(
                    "n_workers sizes the LocalCluster the executor starts; with address set, the cluster's own "
                    "workers are used: remove one of the two"
                )
