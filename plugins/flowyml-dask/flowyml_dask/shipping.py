"""Code the workers cannot import travels by value.

Work is serialized with cloudpickle by the executor, not left to Dask's
pickle-first strategy: modules the workers cannot import (a pipeline file run
with ``flowyml run path/to/file.py:pipeline``, its sibling helper modules) are
detected once per executor and registered with cloudpickle to be pickled by
value.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable, Iterable

from flowyml_dask.worker import unimportable

logger = logging.getLogger("flowyml.dask")

_STDLIB_PREFIXES = (sys.prefix, sys.base_prefix, sys.exec_prefix)
#: Packages the workers must have installed anyway; never shipped as code.
_NEVER_BY_VALUE = frozenset({"flowyml_core", "flowyml_dask", "dask", "distributed", "cloudpickle"})


def _candidates(steps: Iterable[Any], checked: set[str]) -> set[str]:
    """The modules of these steps (and the siblings next to their files) not checked yet."""
    candidates: set[str] = set()
    directories: set[str] = set()
    for step in steps:
        for func in (getattr(step, "func", None), getattr(step, "condition", None)):
            module = getattr(func, "__module__", None)
            if not module or module == "__main__" or module in checked:
                continue
            top = module.partition(".")[0]
            if top in _NEVER_BY_VALUE:
                continue
            candidates.update({module, top})
            path = getattr(sys.modules.get(module), "__file__", None)
            if path and not os.path.abspath(path).startswith(_STDLIB_PREFIXES):
                directories.add(os.path.dirname(os.path.abspath(path)))
    if directories:  # sibling modules the steps may import (helpers next to the pipeline file)
        for name, mod in list(sys.modules.items()):
            path = getattr(mod, "__file__", None)
            if path and "." not in name and os.path.dirname(os.path.abspath(path)) in directories:
                candidates.add(name)
    candidates -= checked
    return {c for c in candidates if c.partition(".")[0] not in _NEVER_BY_VALUE}


def ship_user_modules(get_client: Callable[[], Any], steps: Iterable[Any], checked: set[str]) -> None:
    """Pickle by value the modules of these steps (and their siblings) that workers cannot import.

    ``checked`` is the executor's set of modules already asked about; it
    grows by those asked now (not when the workers could not be asked).
    ``get_client`` connects on first use: only when there is something to ask.
    """
    import cloudpickle

    candidates = _candidates(steps, checked)
    if not candidates:
        return
    client = get_client()  # connection problems surface here, as themselves
    try:  # a worker that is restarting or leaving does not answer; the others do
        answers = client.run(unimportable, sorted(candidates), on_error="ignore")
    except Exception as exc:  # the scheduler itself failed the call: ask again on the next run
        logger.warning("could not ask the Dask workers which modules they can import: %r", exc)
        return
    # No worker to ask (all restarting, or an adaptive cluster at zero): sending code by value
    # always works, so do that rather than guess.
    missing = set().union(*map(set, answers.values())) if answers else set(candidates)
    for name in sorted(missing):
        module = sys.modules.get(name)
        if module is None:
            continue
        if "." in name and name.partition(".")[0] in missing:
            continue  # covered by its top-level package
        logger.info("workers cannot import %s: sending its code by value", name)
        cloudpickle.register_pickle_by_value(module)
    checked.update(candidates)
