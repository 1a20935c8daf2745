"""The test plugin's components, imported only when a stack uses them."""

from __future__ import annotations

import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import attrs

from flowyml_core.components import ArtifactStore, CacheEntry, CacheStore, Executor
from flowyml_core.config import secret_field
from flowyml_core.errors import FlowymlError
from flowyml_core.execution import run_step


@attrs.define
class EchoExecutorConfig:
    """``prefix`` is printed before each step; ``repeat`` (an int) shows typed options work."""

    prefix: str = "echo"
    repeat: int = attrs.field(default=1, validator=attrs.validators.ge(0))
    token: str | None = secret_field()
    require_token: bool = False


class EchoExecutor(Executor):
    """Announces each step on stdout, then runs it with the core's step semantics.

    Only ``execute_step`` is implemented, and with the seed's signature (no
    ``router`` / ``input_fingerprints``): groups and whole pipelines come from
    the core's defaults, which must drop the arguments it does not declare.
    """

    def __init__(self, config: EchoExecutorConfig | None = None) -> None:
        super().__init__(config or EchoExecutorConfig())
        if self.config.token == "explode":
            # A library that echoes the secret back: the core must scrub it.
            raise ValueError(f"token {self.config.token!r} was refused")
        self.executed: list[str] = []

    def validate(self) -> None:
        if self.config.require_token and not self.config.token:
            raise FlowymlError("echo executor: require_token is set but no token is configured")
        if self.config.token and self.config.token.startswith("bad"):
            raise FlowymlError(f"echo executor: token {self.config.token} is not accepted")

    def execute_step(self, step, inputs, context_params, cache_store=None, artifact_store=None,
                     run_id=None, project_name="default", all_outputs=None):
        for _ in range(self.config.repeat):
            sys.stdout.write(f"[{self.config.prefix}] {step.name}\n")
        sys.stdout.flush()
        self.executed.append(step.name)
        return run_step(step, inputs, context_params, cache_store=cache_store, artifact_store=artifact_store,
                        run_id=run_id, project_name=project_name, all_outputs=all_outputs)


@attrs.define
class MemoryCacheStoreConfig:
    max_entries: int = 1000


class MemoryCacheStore(CacheStore):
    """A dict; the oldest entry goes when ``max_entries`` is reached."""

    def __init__(self, config: MemoryCacheStoreConfig | None = None) -> None:
        super().__init__(config or MemoryCacheStoreConfig())
        self.entries: dict[str, CacheEntry] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> CacheEntry | None:
        entry = self.entries.get(key)
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def set_value(self, key, value, step_name, code_hash, fingerprint=None) -> None:
        if key not in self.entries and len(self.entries) >= self.config.max_entries:
            self.entries.pop(next(iter(self.entries)))
        self.entries[key] = CacheEntry(value, step_name, code_hash, fingerprint, time.time())

    def invalidate(self, key=None, step_name=None) -> int:
        doomed = [k for k, e in self.entries.items() if k == key or (step_name is not None and e.step_name == step_name)]
        for k in doomed:
            del self.entries[k]
        return len(doomed)

    def clear(self) -> None:
        self.entries.clear()

    def stats(self) -> dict[str, Any]:
        return {"entries": len(self.entries), "bytes": 0, "hits": self.hits, "misses": self.misses}


@attrs.define
class PickleDirArtifactStoreConfig:
    path: str = ".flowyml-test/artifacts"


class PickleDirArtifactStore(ArtifactStore):
    """``<path>/<project>/<run_id>/<step>/<name>.pkl``: enough for step-runner tests across processes."""

    def __init__(self, config: PickleDirArtifactStoreConfig | None = None) -> None:
        super().__init__(config or PickleDirArtifactStoreConfig())
        self.root = Path(self.config.path).resolve()

    def uri_for(self, run_id, step_name, name, project_name="default"):
        return str(self.root / project_name / run_id / step_name / f"{name}.pkl")

    def materialize(self, obj, name, run_id, step_name, project_name="default"):
        uri = Path(self.uri_for(run_id, step_name, name, project_name))
        uri.parent.mkdir(parents=True, exist_ok=True)
        tmp = uri.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(obj))
        os.replace(tmp, uri)
        return str(uri)

    def load(self, uri):
        return pickle.loads(Path(uri).read_bytes())

    def exists(self, uri):
        return Path(uri).exists()
