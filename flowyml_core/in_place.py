"""Noticing a step that changed a shared input in place.

Locally, every step that reads an asset gets the same object. A step that
changes its input in place (``df.dropna(inplace=True)``, ``rows.sort()``)
therefore changes it for every step that reads it after, while their cache
keys still say the original value: a later rerun, in which the changing step
is cached and does not run, would compute from the original and could find an
entry computed from the changed one. A remote run gives each unit its own copy.

So, for an asset that two or more steps read (and only when the cache has
fingerprinted it), the value is fingerprinted again after each step that ran
and read it. A change is logged once. The steps after get the value as it was
produced, read again from the producer's cache entry, as in a remote run; where
it cannot be read again, they get the changed value and are keyed by it, so
that no cache entry holds a result computed from a value its key does not
describe. Copying each input in advance would double the memory a large array
needs, and most steps do not change their inputs.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Mapping, MutableMapping

from flowyml_core.errors import UnfingerprintableError
from flowyml_core.fingerprint import fingerprint

logger = logging.getLogger("flowyml.run")


class InPlaceGuard:
    """The assets more than one reader (a step, or a unit of steps) reads, and each value's fingerprint as last seen."""

    def __init__(self, readers: Iterable[Iterable[str]]) -> None:
        """``readers``: for each reader, the assets it reads from outside itself (each once)."""
        counts: dict[str, int] = {}
        for assets in readers:
            for asset in assets:
                counts[asset] = counts.get(asset, 0) + 1
        self._left = {asset: n for asset, n in counts.items() if n > 1}
        self._seen: dict[str, str] = {}
        self._warned: set[tuple[str, str]] = set()

    def shared(self, assets: Iterable[str]) -> list[str]:
        """Those of ``assets`` that more than one reader reads."""
        return [a for a in assets if a in self._left] if self._left else []

    def produced(self, step: Any, result: Any, assets: Mapping[str, Any]) -> None:
        """Note the value of each shared asset ``step`` hands on (when the cache fingerprinted its output)."""
        if result.output_fingerprint is None:
            return
        for name in self.shared(assets):
            if len(step.outputs) == 1 and not result.cached:
                self._seen[name] = result.output_fingerprint  # the fingerprint of this very object
            else:
                self.watch(name, assets[name])

    def watch(self, asset: str, value: Any) -> None:
        """Note ``value`` as what the readers of ``asset`` get, unless it is noted already."""
        if asset in self._left and asset not in self._seen:
            seen = fingerprint_or_none(value)
            if seen is not None:
                self._seen[asset] = seen

    def read(self, reader: str, assets: Iterable[str], values: MutableMapping[str, Any], ran: bool,
             concurrent: bool = False, original: Callable[[str, str], Any] | None = None
             ) -> tuple[dict[str, str], list[str]]:
        """What ``reader`` ("step NAME", "group NAME") left changed of the ``assets`` it read.

        ``values`` holds their values now, by asset name.

        ``original(asset, fingerprint)`` may give the value as it was produced
        (read again from the cache); it then replaces the changed one in
        ``values``, so that the readers after get what a remote run gives them.
        Returns the new fingerprint of each asset left changed, and the assets
        whose value was replaced by the original. The last reader of an asset
        is not checked (no one reads the value after it) unless others ran at
        the same time (``concurrent``), when the change may be theirs.
        """
        changed: dict[str, str] = {}
        restored: list[str] = []
        for asset in assets:
            if asset not in self._left or asset not in values:
                continue
            self._left[asset] -= 1
            before = self._seen.get(asset)
            if not ran or before is None or (self._left[asset] <= 0 and not concurrent):
                continue
            now = fingerprint_or_none(values[asset])
            if now is None or now == before:
                continue
            value = None if original is None else original(asset, before)
            if value is not None:
                values[asset] = value
                restored.append(asset)
                after = "get it as it was produced, read again from the cache, as in a remote run"
            else:
                self._seen[asset] = changed[asset] = now
                after = "get the changed value here, but each would get the original in a remote run"
            if (reader, asset) not in self._warned:
                self._warned.add((reader, asset))
                who = (f"{asset!r} changed in place while {reader} ran (it, or a step running at the same time, "
                       "changed it)") if concurrent else f"{reader} changed its input {asset!r} in place"
                logger.warning("%s; the steps that read it after %s. Return a new value (e.g. a copy) instead",
                               who, after)
        return changed, restored


def fingerprint_or_none(value: Any) -> str | None:
    try:
        return fingerprint(value)
    except UnfingerprintableError:  # such a value is never part of a key: nothing to keep consistent
        return None
