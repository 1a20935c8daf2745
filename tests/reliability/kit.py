"""Shared tools of the reliability suite (used by the tests and by scripts/reliability_report.py).

Nothing here imports pytest: the report script runs the same measurement
functions outside pytest and writes their figures to docs/reliability.md.

* throwaway plugin distributions (a ``NAME-0.1.dist-info/entry_points.txt`` and
  a module in a directory put on ``sys.path`` / ``PYTHONPATH``), discovered by
  the core's real entry-point scanner;
* the CLI run in-process (``flowyml_core.cli.main``) with its stdout, stderr
  and exit code captured, or through the real console script;
* file snapshots (sha256 of every file under some roots) to prove "no file
  modified";
* the checks every CLI outcome must pass (exit code, one ``error:`` line per
  problem, no traceback).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import attrs

REPO = Path(__file__).resolve().parents[2]
FLOWYML = Path(sys.executable).with_name("flowyml")


# -- throwaway plugin distributions ------------------------------------------------
def make_dist(
    root: Path,
    dist: str,
    entry_points: Mapping[str, str],
    modules: Mapping[str, str],
    version: str = "0.1",
) -> Path:
    """Write a minimal installed distribution into ``root`` (a sys.path entry).

    ``entry_points`` maps plugin name → ``module`` (group ``flowyml.plugins``);
    ``modules`` maps a module file name (``x.py``) → its source.
    """
    root.mkdir(parents=True, exist_ok=True)
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
    lines = ["[flowyml.plugins]"] + [f"{name} = {value}" for name, value in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for filename, source in modules.items():
        (root / filename).write_text(textwrap.dedent(source), encoding="utf-8")
    return root


#: A plugin with typed configs, used by the fuzzer and the secret tests. It
#: never writes files: its artifact store keeps objects in memory.
RL_IMPL = '''
"""Components of the reliability-suite test plugin (rl-*)."""
from __future__ import annotations

import logging
from typing import Any

import attrs

from flowyml_core.components import ArtifactStore, CacheEntry, CacheStore, Executor, Router
from flowyml_core.config import secret_field
from flowyml_core.errors import FlowymlError
from flowyml_core.execution import run_step

log = logging.getLogger("rl_impl")


@attrs.define
class ExecConfig:
    workers: int = 1
    label: str = ""
    verbose: bool = False
    tags: list[str] = attrs.field(factory=list)
    token: str | None = secret_field()


class Exec(Executor):
    def __init__(self, config: ExecConfig | None = None) -> None:
        super().__init__(config or ExecConfig())
        log.debug("rl executor created with %d workers", self.config.workers)
        if self.config.label == "init-echo":
            # A client library that fails to connect and echoes what it was given.
            raise RuntimeError(f"cannot connect with token {self.config.token}")

    def execute_step(self, step, inputs, context_params, cache_store=None, artifact_store=None, run_id=None,
                     project_name="default", all_outputs=None, router=None, input_fingerprints=None):
        return run_step(step, inputs, context_params, cache_store=cache_store, artifact_store=artifact_store,
                        run_id=run_id, project_name=project_name, all_outputs=all_outputs, router=router,
                        input_fingerprints=input_fingerprints)

    def validate(self) -> None:
        if self.config.label == "invalid":
            raise FlowymlError("label 'invalid' is refused by the rl executor")
        if self.config.label == "echo-token":
            # Libraries often echo what they were given; the core must scrub it.
            raise FlowymlError(f"credentials rejected: token={self.config.token}")


@attrs.define
class StoreConfig:
    path: str
    retries: int = 3
    token: str | None = secret_field()


class MemStore(ArtifactStore):
    def __init__(self, config: StoreConfig) -> None:
        super().__init__(config)
        self.objects: dict[str, Any] = {}

    def uri_for(self, run_id, step_name, name, project_name="default"):
        return f"mem://{self.config.path}/{project_name}/{run_id}/{step_name}/{name}"

    def materialize(self, obj, name, run_id, step_name, project_name="default"):
        uri = self.uri_for(run_id, step_name, name, project_name)
        self.objects[uri] = obj
        return uri

    def load(self, uri):
        return self.objects[uri]

    def exists(self, uri):
        return uri in self.objects

    def validate(self) -> None:
        if self.config.path == "missing":
            raise FlowymlError(f"store path {self.config.path!r} does not exist")


@attrs.define
class CacheConfig:
    size: int = 100


class MemCache(CacheStore):
    def __init__(self, config: CacheConfig | None = None) -> None:
        super().__init__(config or CacheConfig())
        self.entries: dict[str, CacheEntry] = {}

    def get(self, key):
        return self.entries.get(key)

    def set_value(self, key, value, step_name, code_hash, fingerprint=None):
        self.entries[key] = CacheEntry(value, step_name, code_hash, fingerprint)

    def invalidate(self, key=None, step_name=None):
        drop = [k for k, e in self.entries.items() if k == key or e.step_name == step_name]
        for k in drop:
            del self.entries[k]
        return len(drop)

    def clear(self):
        self.entries.clear()

    def stats(self):
        return {"entries": len(self.entries), "bytes": 0}


class NoRouter(Router):
    def route(self, output, *, name, step_name, run_id, project_name="default", return_type=None):
        return None
'''

RL_PLUGIN = '''
from flowyml_core import hookimpl

FLOWYML_API_VERSION = "1.0"


@hookimpl
def register_executors(register):
    register("rl-exec", "rl_impl:Exec", config="rl_impl:ExecConfig", summary="reliability test executor")


@hookimpl
def register_artifact_stores(register):
    register("rl-mem", "rl_impl:MemStore", config="rl_impl:StoreConfig", summary="in-memory store")


@hookimpl
def register_cache_stores(register):
    register("rl-cache", "rl_impl:MemCache", config="rl_impl:CacheConfig", summary="in-memory cache")


@hookimpl
def register_routers(register):
    register("rl-router", "rl_impl:NoRouter", summary="routes nothing")
'''

#: A pipeline file whose steps need nothing but the core.
PIPELINE_SOURCE = '''
from flowyml_core import Pipeline, step


@step(outputs=["numbers"])
def make(n: int = 3):
    return list(range(n))


@step(inputs=["numbers"], outputs=["total"])
def total(numbers):
    return sum(numbers)


pipeline = Pipeline("rl_demo").add_step(make).add_step(total)
not_a_pipeline = 42


@step(outputs=["boom"])
def explode():
    raise ValueError("step exploded on purpose")


failing = Pipeline("rl_failing").add_step(explode)


class Model:
    """Not JSON-able: stored with pickle (signed by the store's key)."""

    def __init__(self, weights):
        self.weights = weights

    def __eq__(self, other):
        return isinstance(other, Model) and other.weights == self.weights


@step(outputs=["model"])
def train(n: int = 3):
    return Model(list(range(n)))


@step(inputs=["model"], outputs=["score"])
def score(model):
    return sum(model.weights)


objects = Pipeline("rl_objects").add_step(train).add_step(score)
'''


def install_rl_plugin(root: Path) -> Path:
    """The rl-* test plugin (rl-exec, rl-mem, rl-cache, rl-router) in ``root``."""
    return make_dist(root, "rl-plugin", {"rl": "rl_plugin"}, {"rl_plugin.py": RL_PLUGIN, "rl_impl.py": RL_IMPL})


@contextlib.contextmanager
def plugin_path(*roots: Path):
    """Put plugin roots first on sys.path and reload the plugin registry; undo afterwards."""
    import importlib

    from flowyml_core.plugins import reset_registry

    old = list(sys.path)
    sys.path[:0] = [str(r) for r in roots]
    importlib.invalidate_caches()
    reset_registry()
    try:
        yield
    finally:
        sys.path[:] = old
        reset_registry()


# -- running the CLI -------------------------------------------------------------------
@attrs.define
class CliResult:
    argv: list[str]
    code: int
    out: str
    err: str
    uncaught: str | None = None  # an exception that escaped main()


@contextlib.contextmanager
def environ(values: Mapping[str, str | None]):
    """Set/unset environment variables for the block."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_inprocess(argv: Sequence[str], cwd: Path | None = None) -> CliResult:
    """``flowyml ARGV`` through ``flowyml_core.cli.main`` in this process."""
    from flowyml_core.cli import main

    out, err = io.StringIO(), io.StringIO()
    uncaught = None
    old_cwd = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as exc:  # argparse: --help/--version exit 0, usage errors exit 2
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException as exc:  # noqa: BLE001 - this is what the fuzzer looks for
                import traceback

                code = -1
                uncaught = "".join(traceback.format_exception(exc))
    finally:
        os.chdir(old_cwd)
    return CliResult(list(argv), code, out.getvalue(), err.getvalue(), uncaught)


def run_console(argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 120) -> CliResult:
    """``flowyml ARGV`` through the real console script of this environment."""
    proc = subprocess.run(
        [str(FLOWYML), *argv], cwd=cwd, env=dict(env if env is not None else os.environ),
        capture_output=True, text=True, timeout=timeout,
    )
    return CliResult(list(argv), proc.returncode, proc.stdout, proc.stderr)


def cli_problems(result: CliResult) -> list[str]:
    """What is wrong with how the CLI ended, whatever the input (empty = fine).

    Exit 0, 1 (a user error: ``error:`` first line, further lines indented, one
    problem per line) or 2 (argparse usage); never an escaped exception, a
    traceback or the catch-all "unexpected" error that marks a bug.
    """
    problems = []
    if result.uncaught is not None:
        problems.append(f"uncaught exception: {result.uncaught.strip().splitlines()[-1]}")
        return problems
    if result.code not in (0, 1, 2):
        problems.append(f"exit code {result.code}")
    err = result.err
    if result.argv[:1] == ["run"] and "error: step '" in err:
        # A failing step's own error (the user's code) is shown with its traceback, on purpose:
        # only what comes before it is the CLI's.
        err = err[: err.index("error: step '")] + err[err.index("error: step '"):].split("\n", 1)[0] + "\n"
    out = result.out
    if result.argv[:2] == ["runs", "show"] and "--json" in result.argv and result.code == 0:
        # A failed step's recorded error (its traceback included) is the document's data, not the CLI's.
        document = json.loads(out)
        for step in document.get("steps", {}).values():
            step.pop("error", None)
        out = json.dumps(document)
    if "Traceback (most recent call last)" in err or "Traceback (most recent call last)" in out:
        problems.append("traceback printed")
    if "error: unexpected " in result.err:
        problems.append(f"unexpected exception reached the user: {result.err.strip().splitlines()[0]}")
    if result.code == 1 and "--json" in result.argv and not result.err.strip():
        # A listing asked for as JSON reports its failure in the document (e.g. validate --json).
        try:
            json.loads(result.out)
        except ValueError:
            problems.append(f"exit 1 with --json, no error on stderr and no JSON on stdout: {result.out[:200]!r}")
    elif result.code == 1:
        lines = [line for line in err.rstrip("\n").split("\n") if not _is_log_line(line)]
        if not lines or not lines[0].startswith("error: "):
            problems.append(f"exit 1 without an 'error:' first line on stderr: {result.err[:200]!r}")
        elif any(line and not line.startswith("  ") for line in lines[1:]):
            problems.append(f"error continues on unindented lines: {result.err[:300]!r}")
    if result.code == 2 and "usage:" not in result.err:
        problems.append(f"exit 2 without a usage message: {result.err[:200]!r}")
    return problems


def _is_log_line(line: str) -> bool:
    return line.split(" ", 1)[0] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


# -- files -------------------------------------------------------------------------------
def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (a missing root is an empty snapshot)."""
    digests: dict[str, str] = {}
    for root in roots:
        if root.is_file():
            digests[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest()
            continue
        if not root.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = Path(dirpath) / name
                try:
                    digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
                except OSError:
                    digests[str(path)] = "<unreadable>"
    return digests


def changed(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def files_containing(needle: bytes, *roots: Path) -> list[str]:
    hits = []
    for root in roots:
        if not root.exists():
            continue
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = Path(dirpath) / name
                try:
                    if needle in path.read_bytes():
                        hits.append(str(path))
                except OSError:
                    continue
    return hits


# -- logging ---------------------------------------------------------------------------
class RecordingHandler(logging.Handler):
    """Keeps every record (formatted message and traceback text) at any level."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        try:
            text = record.getMessage()
        except Exception as exc:  # a bad format string is itself worth seeing
            text = f"<unformattable {record.msg!r}: {exc!r}>"
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.texts.append(text)


@contextlib.contextmanager
def record_logs():
    """Capture every log record of every logger at DEBUG for the block."""
    handler = RecordingHandler()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def env_for_subprocess(extra_path: Iterable[Path] = (), **values: str) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(p) for p in extra_path]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(values)
    return env
