"""Outputs left on the Dask workers, as the client sees them: references, fetched when read.

A large output never travels to the client on its own: the units that
consume it receive the worker-side value through Dask (worker to worker), and
the client fetches it only when someone reads it (``RunResult.outputs[name]``,
``HeldValue.result()``). Holding a reference keeps the value in the cluster's
memory; dropping the :class:`~flowyml_core.results.RunResult` (and the
references taken from it) frees it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from flowyml_core.errors import FlowymlError

from flowyml_dask.worker import HeldInfo


class HeldValue:
    """A step's output, or one asset of it, kept in the memory of the Dask worker that produced it.

    It is what ``ExecutionResult.output`` holds for such a step, and what
    the walker passes between units. :meth:`result` fetches the value.
    """

    __slots__ = ("future", "step_name", "asset", "info")

    def __init__(self, future: Any, step_name: str, asset: str | None, info: HeldInfo) -> None:
        self.future = future  # the unit's task: its value (a HeldOutcome) is on a worker
        self.step_name = step_name
        self.asset = asset
        self.info = info

    def assets(self) -> dict[str, HeldValue]:
        """One reference per asset of this step's output (as ``split_outputs`` names them)."""
        return {name: HeldValue(self.future, self.step_name, name, self.info) for name in self.info.assets}

    def result(self, timeout: float | None = None) -> Any:
        """Fetch the value from its worker (a copy arrives here; the worker keeps its own)."""
        return fetch_values([self], timeout)[0]

    def __repr__(self) -> str:
        what = f"asset {self.asset!r} of step {self.step_name!r}" if self.asset else f"output of step {self.step_name!r}"
        size = f", {self.info.nbytes / 1e6:.1f} MB" if self.info.nbytes is not None else ""
        return f"<{what}, held on a Dask worker: {self.info.type_name}{size}>"


def fetch_values(refs: list[HeldValue], timeout: float | None = None) -> list[Any]:
    """The values behind ``refs``, fetched from their workers in one round trip."""
    from flowyml_dask.worker import fetch

    if not refs:
        return []
    client = refs[0].future.client
    try:
        tasks = [client.submit(fetch, ref.future, ref.step_name, ref.asset) for ref in refs]
        return client.gather(tasks, asynchronous=False) if timeout is None else [t.result(timeout) for t in tasks]
    except Exception as exc:  # a closed client, a lost cluster: say which output and what to do
        names = ", ".join(repr(ref.asset or ref.step_name) for ref in refs[:3]) + (", ..." if len(refs) > 3 else "")
        raise FlowymlError(
            f"cannot fetch {names} from the Dask cluster that holds it ({type(exc).__name__}: {exc}); outputs of "
            "a Dask run stay on its workers until read: read them before closing the executor"
        ) from exc


class HeldOutputs(Mapping):
    """``RunResult.outputs`` of a Dask run: assets left on the workers are fetched on first read.

    A read-only mapping of asset name to value. ``name in outputs``,
    ``len`` and iterating over names fetch nothing; reading a value fetches
    it once and keeps it; ``items()``/``values()`` (and ``==``) fetch every
    held value in one round trip. :meth:`held` names what is still on the
    workers.
    """

    def __init__(self, assets: dict[str, Any]) -> None:
        self._assets = dict(assets)

    def __getitem__(self, name: str) -> Any:
        value = self._assets[name]
        if isinstance(value, HeldValue):
            value = self._assets[name] = value.result()
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._assets)

    def __len__(self) -> int:
        return len(self._assets)

    def __contains__(self, name: object) -> bool:
        return name in self._assets

    def held(self) -> list[str]:
        """The assets still on the workers (not read yet)."""
        return [name for name, value in self._assets.items() if isinstance(value, HeldValue)]

    def fetch_all(self) -> dict[str, Any]:
        """Every asset as a plain dict, the held ones fetched together."""
        names = self.held()
        for name, value in zip(names, fetch_values([self._assets[n] for n in names])):
            self._assets[name] = value
        return dict(self._assets)

    def items(self) -> Any:
        return self.fetch_all().items()

    def values(self) -> Any:
        return self.fetch_all().values()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return self.fetch_all() == dict(other.items())

    __hash__ = None  # type: ignore[assignment]  # a mapping, like dict

    def __repr__(self) -> str:
        return f"HeldOutputs({self._assets!r})"
