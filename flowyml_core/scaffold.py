"""``flowyml plugin new NAME --kind KIND``: a plugin package that installs and passes the kit as generated.

The package is the smallest correct one: an attrs config, a component that
fulfils its contract, the ``flowyml.plugins`` entry point, the plugin module
declaring ``FLOWYML_API_VERSION``, and a test module that adopts the
conformance kit. Everything else is the author's to change; CONTRIBUTING.md
walks through it.
"""

from __future__ import annotations

import keyword
import re
import string
from pathlib import Path

from flowyml_core.errors import FlowymlError

KINDS = ("executor", "cache_store", "artifact_store", "router")
_NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")


def _names(name: str) -> dict[str, str]:
    raw = name.strip()
    base = re.sub(r"^flowyml[-_]", "", raw.lower())
    if not _NAME.match(base):
        raise FlowymlError(
            f"plugin name {name!r} must be lowercase letters and digits, optionally joined by '-' or '_' "
            "(e.g. 'myexec' or 'ray-cluster')"
        )
    package = "flowyml_" + base.replace("-", "_")
    if keyword.iskeyword(package):  # pragma: no cover - cannot happen with the prefix, kept for safety
        raise FlowymlError(f"plugin name {name!r} gives the package name {package!r}, a Python keyword")
    camel = "".join(part.capitalize() for part in re.split(r"[-_]", base))
    from flowyml_core.plugins import API_VERSION

    return {
        "flavor": base,
        "dist": f"flowyml-{base}",
        "package": package,
        "Camel": camel,
        "api_version": API_VERSION,
    }


def new_plugin(name: str, kind: str = "executor", directory: Path | str = ".") -> Path:
    """Write the package ``flowyml-NAME/`` under ``directory`` and return its path."""
    if kind not in KINDS:
        raise FlowymlError(f"unknown plugin kind {kind!r} (choose one of: {', '.join(KINDS)})")
    names = _names(name)
    root = Path(directory).expanduser().resolve() / names["dist"]
    if root.exists() and any(root.iterdir()):
        raise FlowymlError(f"{root} already exists and is not empty; remove it or pass another --directory")
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{names['package']}/__init__.py": INIT,
        f"{names['package']}/plugin.py": PLUGIN,
        f"{names['package']}/{kind}.py": COMPONENTS[kind],
        "tests/test_conformance.py": TESTS[kind],
    }
    hook = {"executor": "register_executors", "cache_store": "register_cache_stores",
            "artifact_store": "register_artifact_stores", "router": "register_routers"}[kind]
    cls = names["Camel"] + {"executor": "Executor", "cache_store": "CacheStore",
                            "artifact_store": "ArtifactStore", "router": "Router"}[kind]
    values = {**names, "kind": kind, "kind_words": kind.replace("_", " "), "hook": hook, "Class": cls}
    try:
        for relative, template in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(string.Template(template).substitute(values), encoding="utf-8")
    except OSError as exc:
        raise FlowymlError(f"cannot write the plugin package to {root}: {exc.strerror or exc}") from exc
    return root


# -- templates ($name placeholders; $$ is a literal dollar) ------------------------------------
PYPROJECT = '''\
[build-system]
requires = ["setuptools>=70.1"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "A flowyml $kind_words plugin: flavor '$flavor'"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["flowyml-core>=0.1"]

[project.optional-dependencies]
test = ["pytest>=8"]

# flowyml finds the plugin through this entry point (read once per process).
[project.entry-points."flowyml.plugins"]
$flavor = "$package.plugin"

[tool.setuptools.packages.find]
include = ["$package*"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

README = '''\
# $dist

A [flowyml](https://github.com/flowyml) $kind_words plugin providing the flavor `$flavor`.

```bash
pip install -e .            # registers the plugin (entry point flowyml.plugins: $flavor)
flowyml plugins             # lists it, with its flavors
pytest                      # the flowyml conformance kit against $Class
```

Use it in a project's `stacks.toml`:

```toml
[stacks.try-$flavor]
executor = "local"
$kind = { flavor = "$flavor" }
```

(For an executor plugin: `executor = { flavor = "$flavor" }`.)
'''

INIT = '''\
"""$dist: a flowyml $kind_words plugin (flavor ``$flavor``).

Keep this module free of heavy imports: flowyml imports ``$package.plugin``
(and so this package) every time it lists plugins.
"""

__version__ = "0.1.0"
'''

PLUGIN = '''\
"""Registration of the ``$flavor`` $kind_words flavor.

The implementation and its config are named as "module:Name" strings: flowyml
imports them only when a stack that uses this flavor is resolved, so listing
plugins stays fast whatever the implementation imports.
"""

from flowyml_core import hookimpl

#: The flowyml plugin API this plugin is written for; flowyml reports a mismatch.
FLOWYML_API_VERSION = "$api_version"


@hookimpl
def $hook(register):
    register(
        "$flavor",
        "$package.$kind:$Class",
        config="$package.$kind:${Class}Config",
        summary="TODO: one line saying what this $kind_words does",
    )
'''

EXECUTOR = '''\
"""The ``$flavor`` executor."""

from __future__ import annotations

import logging
from typing import Any

import attrs

from flowyml_core.components import Executor
from flowyml_core.execution import run_step
from flowyml_core.results import ExecutionResult

logger = logging.getLogger(__name__)


@attrs.define(frozen=True)
class ${Class}Config:
    """Options of ``executor = { flavor = "$flavor", ... }`` in stacks.toml."""

    log_steps: bool = False


class $Class(Executor):
    """Runs each step here; replace the body of execute_step with "run it over there"."""

    def __init__(self, config: ${Class}Config | None = None) -> None:
        super().__init__(config if config is not None else ${Class}Config())

    def execute_step(self, step: Any, inputs: dict, context_params: dict, **kwargs: Any) -> ExecutionResult:
        if self.config.log_steps:
            logger.info("running step %s", step.name)
        # run_step is flowyml's step semantics: condition, cache, retries, artifacts.
        return run_step(step, inputs, context_params, **kwargs)
'''

_STORE_IMPORTS = '''\
import hashlib
import hmac
import json
import logging
import os
import pickle
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

'''

_STORE_COMMON = '''
logger = logging.getLogger(__name__)

MAGIC = b"$dist 1\\n"


def _key_for(root: Path, configured: str | None) -> bytes:
    """The HMAC key: the configured one, else a random one kept (mode 0600) beside the data.

    A key beside the data catches damage and foreign files; against someone who
    can write the storage, configure ``signing_key = "$${env:MY_KEY}"`` instead.
    """
    if configured:
        return configured.encode()
    path = root / ".signing-key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    root.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".tmp-key-")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        os.link(tmp, path)  # publishes a complete key, or fails if another writer was first
    except FileExistsError:
        key = path.read_bytes()
    finally:
        os.unlink(tmp)
    return key


def _write(path: Path, key: bytes, header: dict, payload: bytes) -> None:
    """Header + payload with an HMAC, written to a temp file and renamed: readers see all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {**header, "size": len(payload), "hmac": hmac.new(key, payload, hashlib.sha256).hexdigest()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(MAGIC + json.dumps(header).encode() + b"\\n" + payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path, key: bytes) -> tuple[dict, Any]:
    """Header and value; IntegrityError (nothing unpickled) unless the bytes carry our HMAC."""
    data = path.read_bytes()
    newline = data.find(b"\\n", len(MAGIC))
    if not data.startswith(MAGIC) or newline < 0:
        raise IntegrityError(f"{path}: not written by $dist")
    try:
        header = json.loads(data[len(MAGIC):newline])
    except ValueError:
        raise IntegrityError(f"{path}: damaged header") from None
    payload = data[newline + 1:]
    expected = hmac.new(key, payload, hashlib.sha256).hexdigest()
    if len(payload) != header.get("size") or not hmac.compare_digest(expected, str(header.get("hmac"))):
        raise IntegrityError(f"{path}: contents altered since they were written; refusing to load them")
    return header, pickle.loads(payload)
'''

CACHE_STORE = '''\
"""The ``$flavor`` cache store: one signed file per key in a directory."""

from __future__ import annotations

''' + _STORE_IMPORTS + '''from flowyml_core.components import CacheEntry, CacheStore
from flowyml_core.config import secret_field
from flowyml_core.errors import IntegrityError
''' + _STORE_COMMON + '''

@attrs.define(frozen=True)
class ${Class}Config:
    """Options of ``cache_store = { flavor = "$flavor", ... }``; put secrets in "$${env:NAME}"."""

    path: str = ".flowyml/$flavor-cache"
    signing_key: str | None = secret_field()


class $Class(CacheStore):
    def __init__(self, config: ${Class}Config | None = None) -> None:
        super().__init__(config if config is not None else ${Class}Config())
        self.root = Path(self.config.path).expanduser().resolve()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def get(self, key: str) -> CacheEntry | None:
        try:
            header, value = _read(self._path(key), _key_for(self.root, self.config.signing_key))
        except FileNotFoundError:
            return None
        except IntegrityError as exc:
            logger.warning("cache entry %s ignored: %s", key, exc)
            return None
        return CacheEntry(value, header["step_name"], header["code_hash"], header.get("fingerprint"), header["created"])

    def set_value(self, key: str, value: Any, step_name: str, code_hash: str, fingerprint: str | None = None) -> None:
        header = {"step_name": step_name, "code_hash": code_hash, "fingerprint": fingerprint, "created": time.time()}
        _write(self._path(key), _key_for(self.root, self.config.signing_key), header, pickle.dumps(value))

    def _files(self) -> list[Path]:
        return [p for p in self.root.glob("*/*") if p.is_file() and not p.name.startswith(".")]

    def invalidate(self, key: str | None = None, step_name: str | None = None) -> int:
        dropped = 0
        for path in self._files():
            if path.name == key or (step_name and self._step_of(path) == step_name):
                path.unlink(missing_ok=True)
                dropped += 1
        return dropped

    def _step_of(self, path: Path) -> str | None:
        try:
            return _read(path, _key_for(self.root, self.config.signing_key))[0]["step_name"]
        except (OSError, IntegrityError):
            return None

    def clear(self) -> None:
        for path in self._files():
            path.unlink(missing_ok=True)

    def stats(self) -> dict:
        sizes = [p.stat().st_size for p in self._files()]
        return {"entries": len(sizes), "bytes": sum(sizes)}
'''

ARTIFACT_STORE = '''\
"""The ``$flavor`` artifact store: signed files under ``<path>/<project>/<run>/<step>/<name>``."""

from __future__ import annotations

''' + _STORE_IMPORTS + '''from flowyml_core.components import ArtifactStore
from flowyml_core.config import secret_field
from flowyml_core.errors import IntegrityError
''' + _STORE_COMMON + '''

@attrs.define(frozen=True)
class ${Class}Config:
    """Options of ``artifact_store = { flavor = "$flavor", ... }``; put secrets in "$${env:NAME}"."""

    path: str = ".flowyml/$flavor-artifacts"
    signing_key: str | None = secret_field()


class $Class(ArtifactStore):
    def __init__(self, config: ${Class}Config | None = None) -> None:
        super().__init__(config if config is not None else ${Class}Config())
        self.root = Path(self.config.path).expanduser().resolve()

    def uri_for(self, run_id: str, step_name: str, name: str, project_name: str = "default") -> str:
        return str(self.root / project_name / run_id / step_name / name)

    def materialize(self, obj: Any, name: str, run_id: str, step_name: str, project_name: str = "default") -> str:
        uri = self.uri_for(run_id, step_name, name, project_name)
        header = {"type": type(obj).__qualname__, "created": time.time()}
        _write(Path(uri), _key_for(self.root, self.config.signing_key), header, pickle.dumps(obj))
        return uri

    def load(self, uri: str) -> Any:
        return _read(Path(uri), _key_for(self.root, self.config.signing_key))[1]

    def exists(self, uri: str) -> bool:
        return Path(uri).is_file()
'''

ROUTER = '''\
"""The ``$flavor`` router: outputs of the configured types go to their own directory."""

from __future__ import annotations

''' + _STORE_IMPORTS + '''from flowyml_core.components import Router
from flowyml_core.config import secret_field
from flowyml_core.errors import IntegrityError
''' + _STORE_COMMON + '''

@attrs.define(frozen=True)
class ${Class}Config:
    """Options of ``router = { flavor = "$flavor", ... }``."""

    path: str = ".flowyml/$flavor-routed"
    types: list[str] = attrs.field(factory=lambda: ["builtins.dict"])
    signing_key: str | None = secret_field()


class $Class(Router):
    def __init__(self, config: ${Class}Config | None = None) -> None:
        super().__init__(config if config is not None else ${Class}Config())
        self.root = Path(self.config.path).expanduser().resolve()

    def route(self, output: Any, *, name: str, step_name: str, run_id: str, project_name: str = "default",
              return_type: Any = None) -> str | None:
        kind = type(output)
        if f"{kind.__module__}.{kind.__qualname__}" not in self.config.types:
            return None
        path = self.root / project_name / run_id / step_name / name
        header = {"type": kind.__qualname__, "created": time.time()}
        _write(path, _key_for(self.root, self.config.signing_key), header, pickle.dumps(output))
        return str(path)

    def load(self, uri: str) -> Any:
        return _read(Path(uri), _key_for(self.root, self.config.signing_key))[1]
'''

COMPONENTS = {"executor": EXECUTOR, "cache_store": CACHE_STORE, "artifact_store": ARTIFACT_STORE, "router": ROUTER}

_TEST_HEAD = '''\
"""The flowyml conformance kit against $Class: run with `pytest`."""

import pytest

'''

TESTS = {
    "executor": _TEST_HEAD + '''\
from flowyml_core.testing import ExecutorContract
from $package.executor import $Class


class Test$Class(ExecutorContract):
    flavor = "$flavor"
    plugin = "$package.plugin"  # used until the package is pip-installed

    @pytest.fixture
    def executor(self):
        return $Class()
''',
    "cache_store": _TEST_HEAD + '''\
from flowyml_core.testing import CacheStoreContract
from $package.cache_store import $Class, ${Class}Config


class Test$Class(CacheStoreContract):
    @pytest.fixture
    def cache_store(self, tmp_path):
        return $Class(${Class}Config(path=str(tmp_path / "cache")))
''',
    "artifact_store": _TEST_HEAD + '''\
from flowyml_core.testing import ArtifactStoreContract
from $package.artifact_store import $Class, ${Class}Config


class Test$Class(ArtifactStoreContract):
    @pytest.fixture
    def artifact_store(self, tmp_path):
        return $Class(${Class}Config(path=str(tmp_path / "artifacts")))
''',
    "router": _TEST_HEAD + '''\
from flowyml_core.testing import RouterContract
from $package.router import $Class, ${Class}Config


class Test$Class(RouterContract):
    @pytest.fixture
    def router(self, tmp_path):
        return $Class(${Class}Config(path=str(tmp_path / "routed"), types=["builtins.dict"]))

    @pytest.fixture
    def unrouted_value(self):
        return [1, 2, 3]
''',
}
