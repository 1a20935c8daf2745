"""Pipelines on GCS stores behind a faulty network, and kill -9 / concurrent writers on GCS.

The GCS emulator (fake-gcs-server) sits behind the fault proxy, which drops
connections, answers 503 or delays a share of the requests. A pipeline whose
steps produce self-verifying values (bytes up to 5 MB, JSON, numpy, signed
pickles) runs through ``flowyml run`` on a stack whose artifact and cache
stores go through the proxy; runs are repeated with the same parameters so the
cached runs read back through the faults too. Each run must either complete
(exit 0) or fail cleanly (exit 1, an ``error:`` line naming the step; no
escaped exception). Downstream steps verify what they receive (a torn cached
value fails the run with "TORN"), and after all runs every artifact and cache
entry is read again, straight from the emulator and through the proxy, and
verified: no partial artifact is ever read.

The crash and concurrency tests of :mod:`tests.reliability.stores` run against
the emulator as well (fewer writes: every write is an HTTP upload).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import attrs

from tests.reliability.kit import REPO, cli_problems, environ, run_console, run_inprocess
from tests.reliability.store_worker import build_stores, verify
from tests.reliability.stores import SIGNING_KEY

PIPELINE = '''
import random
import sys

sys.path.insert(0, {repo!r})
from flowyml_core import Pipeline, step
from tests.reliability.store_worker import make_value, verify


@step(outputs=["a", "b", "c"], retry=1, retry_delay=0.05)
def produce(seed: int = 0):
    rng = random.Random(seed)
    return make_value("a", seed, rng), make_value("b", seed, rng), make_value("c", seed, rng)


@step(inputs=["a", "b", "c"], outputs=["checked"])
def check(a, b, c):
    for name, value in (("a", a), ("b", b), ("c", c)):
        ok, what = verify(value, name)
        if not ok:
            raise AssertionError(f"TORN {{name}}: {{what}}")
    return len([v for v in (a, b, c) if v is not None])


pipeline = Pipeline("rl_gcs").add_step(produce).add_step(check)
'''

#: (label, FaultProxy.set_faults arguments, the runs must fail)
FAULTS: list[tuple[str, dict[str, Any], bool]] = [
    ("drops 10%", {"drop": 0.10}, False),
    ("503s 20%", {"error503": 0.20}, False),
    ("slow 25% (+300 ms)", {"delay": 0.25, "delay_ms": 300}, False),
    ("mixed 5/10/10%", {"drop": 0.05, "error503": 0.10, "delay": 0.10, "delay_ms": 200}, False),
]
#: A sustained outage: every upload (an artifact or a cache entry: one object each) answers 503;
#: every run must fail, cleanly, once the store's deadline (DEADLINE) is spent (it took 167 s
#: when gcsfs's own retries multiplied flowyml's). Part of the long variant and of the report.
OUTAGE: tuple[str, dict[str, Any], bool] = ("outage: every upload 503", {"error503": 1.0, "methods": {"POST", "PUT"}}, True)
#: The stores' deadline per request: retries go on until it is spent (no retry count is set).
DEADLINE = 10.0


def gcs_spec(bucket: str, endpoint: str, prefix: str, **extra: Any) -> dict[str, Any]:
    common = {"endpoint": endpoint, "signing_key": SIGNING_KEY, "deadline": DEADLINE, "retry_delay": 0.05,
              "retry_max_delay": 0.4, "request_timeout": 5.0, **extra}
    return {
        "flavor": "gcs",
        "cache_store": {"url": f"gs://{bucket}/{prefix}/cache", **common},
        "artifact_store": {"url": f"gs://{bucket}/{prefix}/artifacts", **common},
    }


def _stacks_toml(spec: dict[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps({"stacks": {"faulty": {
        "executor": "local",
        "artifact_store": {"flavor": "gcs", **spec["artifact_store"]},
        "cache_store": {"flavor": "gcs", **spec["cache_store"]},
    }}})


@attrs.define
class GcsRunReport:
    runs: int = 0
    completed: int = 0
    failed_cleanly: int = 0
    unclean: int = 0  # an escaped exception, a traceback of the CLI's own, a bad exit code: must be 0
    torn_in_run: int = 0  # a step received a partial value: must be 0
    artifacts_checked: int = 0
    cache_entries_checked: int = 0
    step_traceback_lines: int = 0  # most traceback lines printed under a failed step's error (console runs)
    partial_reads: int = 0  # an artifact or entry read back that is not complete: must be 0
    refused_reads: int = 0  # IntegrityError / corrupt miss on read-back: must be 0
    faults: dict[str, int] = attrs.Factory(dict)
    by_fault: list[dict[str, Any]] = attrs.Factory(list)
    examples: list[str] = attrs.Factory(list)
    seconds: float = 0.0


def pipeline_runs_under_faults(workdir: Path, emulator: Any, proxy: Any, bucket: str, runs_per_fault: int = 3,
                               seeds: int = 2, outage_runs: int = 0) -> GcsRunReport:
    """``flowyml run`` on GCS stores through the fault proxy; then everything is read back and verified."""
    report = GcsRunReport()
    started = time.perf_counter()
    project = workdir / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "gcs_pipeline.py").write_text(PIPELINE.format(repo=str(REPO)), encoding="utf-8")
    spec = gcs_spec(bucket, proxy.url, "runs")
    (project / "stacks.toml").write_text(_stacks_toml(spec), encoding="utf-8")
    env = {"XDG_CONFIG_HOME": str(workdir / "xdg"), "FLOWYML_STACK": None, "FLOWYML_STACKS_FILE": None,
           "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    with environ(env):
        # Warm up (imports, bucket metadata) without faults, so faults hit the pipeline's own traffic.
        warm = run_inprocess(["run", "gcs_pipeline.py:pipeline", "--stack", "faulty", "--param", "seed=1000"], cwd=project)
        if warm.code != 0:
            raise RuntimeError(f"the pipeline does not run on the emulator without faults: {warm.err[-2000:]}")
        proxy.reset_stats()
        plan = [(f, runs_per_fault) for f in FAULTS] + ([(OUTAGE, outage_runs)] if outage_runs else [])
        for index, ((label, faults, must_fail), count) in enumerate(plan):
            row: dict[str, Any] = {"faults": label, "runs": 0, "completed": 0, "failed_cleanly": 0}
            proxy.set_faults(seed=100 + index, **faults)
            row_started = time.perf_counter()
            try:
                for r in range(count):
                    # fresh parameters per fault set; repeated ones are cached runs that read through the faults
                    seed = 10 * index + r % seeds
                    argv = ["run", "gcs_pipeline.py:pipeline", "--stack", "faulty", "--param", f"seed={seed}"]
                    if r == count - 1 and (count > 1 or must_fail):
                        # the console script too: what reaches stderr there (library logs) is checked as well
                        result = run_console(argv, cwd=project, env=dict(os.environ), timeout=900)
                        row["console_runs"] = row.get("console_runs", 0) + 1
                    else:
                        result = run_inprocess(argv, cwd=project)
                    report.runs += 1
                    row["runs"] += 1
                    problems = cli_problems(result)
                    if "error: step '" in result.err:
                        after = result.err[result.err.index("error: step '"):].splitlines()[1:]
                        report.step_traceback_lines = max(report.step_traceback_lines,
                                                          sum(1 for line in after if line.startswith(("  File ", "Traceback"))))
                    if "TORN" in result.err + result.out:
                        report.torn_in_run += 1
                        _example(report, f"{label}: a step received a partial value: {result.err[-500:]}")
                    if must_fail and result.code == 0 and r < seeds:
                        report.unclean += 1
                        _example(report, f"{label}: a run succeeded although nothing could be uploaded")
                    elif result.code == 0 and not problems:
                        report.completed += 1
                        row["completed"] += 1
                    elif result.code == 1 and not problems:
                        report.failed_cleanly += 1
                        row["failed_cleanly"] += 1
                        first = next((x for x in result.err.splitlines() if x.startswith("error:")), result.err.strip())
                        _example(report, f"{label}: failed cleanly: {first[:300]}")
                    else:
                        report.unclean += 1
                        _example(report, f"{label}: unclean end (exit {result.code}; {problems}): {result.err[-800:]}")
            finally:
                proxy.clear_faults()
            row["seconds_per_run"] = round((time.perf_counter() - row_started) / max(count, 1), 2)
            report.by_fault.append(row)
    report.faults = {k: v for k, v in proxy.stats.items() if k in ("requests", "drop", "error503", "delay")}
    _read_back(report, spec, bucket, emulator.url, proxy)
    report.seconds = time.perf_counter() - started
    return report


def _read_back(report: GcsRunReport, spec: dict[str, Any], bucket: str, direct_url: str, proxy: Any) -> None:
    """Every artifact and cache entry, straight from the emulator and through the (faulty) proxy."""
    from flowyml_core.errors import IntegrityError

    direct = gcs_spec(bucket, direct_url, "runs")
    cache, artifacts = build_stores(direct)
    _, faulty_artifacts = build_stores(spec)
    proxy.set_faults(seed=7, drop=0.05, error503=0.10, delay=0.05, delay_ms=100)
    try:
        for uri in artifacts.list_artifacts():
            name = uri.rstrip("/").rsplit("/", 1)[-1]
            for store in (artifacts, faulty_artifacts):
                report.artifacts_checked += 1
                try:
                    value = store.load(uri)
                except IntegrityError as exc:
                    report.refused_reads += 1
                    _example(report, f"read-back of {uri} refused: {exc}")
                    continue
                except Exception as exc:  # through the faulty proxy a read may fail after its retries
                    if store is artifacts:
                        report.partial_reads += 1
                        _example(report, f"direct read-back of {uri} raised {type(exc).__name__}: {exc}")
                    continue
                if name in ("a", "b", "c"):
                    ok, what = verify(value, name)
                    if not ok:
                        report.partial_reads += 1
                        _example(report, f"read-back of {uri}: {what}")
    finally:
        proxy.clear_faults()
    for path, _size, _age in list(cache.backend.walk(cache.backend.root)):
        key = path.rstrip("/").rsplit("/", 1)[-1]
        if key.startswith(".") or key.endswith(".tmp"):
            continue
        report.cache_entries_checked += 1
        entry = cache.get(key)  # keys are hex digests: stored under their own name
        if entry is None:
            report.refused_reads += 1
            _example(report, f"cache entry {path} does not read back")
            continue
        if isinstance(entry.value, tuple) and len(entry.value) == 3:
            for name, value in zip("abc", entry.value):
                ok, what = verify(value, name)
                if not ok:
                    report.partial_reads += 1
                    _example(report, f"cache entry {path}, {name}: {what}")


def _example(report: Any, message: str) -> None:
    if len(report.examples) < 10:
        report.examples.append(message)


def as_dict(report: Any) -> dict[str, Any]:
    return json.loads(json.dumps(attrs.asdict(report), default=str))


def emulator_env() -> dict[str, str]:
    """Environment for store worker processes talking to the emulator."""
    return {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}


def ensure_gcs() -> bool:
    try:
        import flowyml_gcs.stores  # noqa: F401
    except ImportError:
        return False
    return True


os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
