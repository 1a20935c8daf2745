"""Start-up cost of the flowyml command and of ``import flowyml_core``, next to bare Python.

    .venv/bin/python bench/bench_startup.py              # the table (median of 21 runs)
    .venv/bin/python bench/bench_startup.py -n 51        # more runs
    .venv/bin/python bench/bench_startup.py --importtime "stack list"   # where the time goes

Every case is a fresh process, started the way a person starts it (the
console script for commands), in a scratch project whose ``stacks.toml`` names
every flavor of this repository, with the user's config and FLOWYML_* variables
out of the way. Cases run round-robin so that machine noise hits them alike;
``python -c pass`` measured in the same run is the floor. Budgets (issue 2):
``import flowyml_core`` <= 50 ms and ``flowyml stack list`` <= 150 ms wall;
(issue 15) ``from flowyml_core import Pipeline, step``, the first line of every
pipeline file, <= 3x the floor. ``import attrs`` is shown for reference: a
``Step`` is an attrs class, so that import is part of any pipeline's start.
This is a benchmark, not a test: it exits 1 when a median is over its budget.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
FLOWYML = str(VENV_BIN / "flowyml")
PY = sys.executable

STACKS = """\
default = "local"

[stacks.local]
executor = "local"
artifact_store = { flavor = "local", path = ".flowyml/artifacts" }
cache_store = { flavor = "local", path = ".flowyml/cache" }

[stacks.gcp-prod]
executor = { flavor = "vertex", project_id = "acme-ml", region = "europe-west1" }
artifact_store = { flavor = "gcs", url = "gs://acme-ml-artifacts/flowyml" }
cache_store = { flavor = "gcs", url = "gs://acme-ml-artifacts/cache" }

[stacks.dask]
executor = "dask"

[stacks.echo]
executor = { flavor = "echo", prefix = "bench" }
"""

#: name -> (command, budget in ms of wall time or None)
CASES: dict[str, tuple[list[str], float | None]] = {
    "python -c pass": ([PY, "-c", "pass"], None),
    "import flowyml_core": ([PY, "-c", "import flowyml_core"], 50.0),
    "from flowyml_core import Pipeline, step": ([PY, "-c", "from flowyml_core import Pipeline, step"], None),
    "import attrs": ([PY, "-c", "import attrs"], None),
    "flowyml stack list": ([FLOWYML, "stack", "list"], 150.0),
    "flowyml stack list --json": ([FLOWYML, "stack", "list", "--json"], 150.0),
    "flowyml plugins": ([FLOWYML, "plugins"], None),
    "flowyml stack show echo": ([FLOWYML, "stack", "show", "echo"], None),
}


#: name -> budget as a multiple of the floor's median (``python -c pass``)
RATIO_BUDGETS: dict[str, float] = {"from flowyml_core import Pipeline, step": 3.0}


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWYML_")}
    env["XDG_CONFIG_HOME"] = str(home / "xdg")
    return env


def run_once(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one process, in ms.

    CPU time is what the process itself spent: on a busy machine the wall time
    also counts waiting for a core, the CPU time much less so.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.decode().strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed * 1000, cpu * 1000


def installed_plugins(cwd: Path, env: dict[str, str]) -> list[str]:
    out = subprocess.run([FLOWYML, "plugins", "--json"], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return [f"{p['name']} {p['version'] or ''}".strip() + (" (ERROR)" if p["error"] else "")
            for p in json.loads(out.stdout)["plugins"]]


def stale_bytecode() -> list[str]:
    """Our sources whose .pyc is missing or out of date.

    With PYTHONDONTWRITEBYTECODE set, Python recompiles those on every start
    and never saves the result: that is measured as start-up time.
    """
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    sources = sorted((root / "flowyml_core").glob("*.py")) + sorted((root / "plugins").glob("*/*/plugin.py"))
    stale = []
    for source in sources:
        cached = Path(importlib.util.cache_from_source(str(source)))
        try:
            header = cached.read_bytes()[:16]
        except OSError:
            stale.append(str(source.relative_to(root)))
            continue
        stat = source.stat()
        flags = int.from_bytes(header[4:8], "little")
        mtime, size = int.from_bytes(header[8:12], "little"), int.from_bytes(header[12:16], "little")
        if header[:4] != importlib.util.MAGIC_NUMBER or (
            flags == 0 and (mtime != int(stat.st_mtime) & 0xFFFFFFFF or size != stat.st_size & 0xFFFFFFFF)
        ):
            stale.append(str(source.relative_to(root)))
    return stale


def importtime(case: str, cwd: Path, env: dict[str, str], top: int = 25) -> None:
    cmd, _ = CASES[case]
    if cmd[0] == FLOWYML:
        cmd = [PY, "-X", "importtime", "-c", "import sys; from flowyml_core.cli import main; sys.exit(main())", *cmd[1:]]
    else:
        cmd = [cmd[0], "-X", "importtime", *cmd[1:]]
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    rows = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        own, cumulative, name = line[len("import time:"):].split("|", 2)
        rows.append((int(cumulative), int(own), name.rstrip()))
    rows.sort(reverse=True)
    print(f"-X importtime for {case!r}: top {top} by cumulative time (us)")
    for cumulative, own, name in rows[:top]:
        print(f"{cumulative:>10} {own:>8}  {name}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=21, help="runs per case (median reported)")
    parser.add_argument("--importtime", metavar="CASE", choices=sorted(CASES), help="profile one case's imports")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="flowyml-bench-") as tmp:
        home = Path(tmp)
        project = home / "project"
        project.mkdir()
        (project / "stacks.toml").write_text(STACKS)
        env = environment(home)
        if args.importtime:
            importtime(args.importtime, project, env)
            return 0

        print(f"python {sys.version.split()[0]} at {PY}")
        print("plugins installed: " + ", ".join(installed_plugins(project, env)))
        stale = stale_bytecode() if os.environ.get("PYTHONDONTWRITEBYTECODE") else []
        if stale:
            print("WARNING: PYTHONDONTWRITEBYTECODE is set and these .pyc are missing or stale, so every start "
                  "recompiles them (run: .venv/bin/python -m compileall -q flowyml_core plugins): " + ", ".join(stale))
        for cmd, _ in CASES.values():  # warm the page cache; not counted
            run_once(cmd, project, env)
        times: dict[str, list[float]] = {name: [] for name in CASES}
        cpu: dict[str, list[float]] = {name: [] for name in CASES}
        for _ in range(args.runs):
            for name, (cmd, _) in CASES.items():
                wall, used = run_once(cmd, project, env)
                times[name].append(wall)
                cpu[name].append(used)

    over = []
    floor = statistics.median(times["python -c pass"])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nmedian of {args.runs} runs each, per process, in ms (load average {load:.1f} on {os.cpu_count()} cpus)\n")
    header = f"{'case':<40} {'median':>8} {'min':>8} {'- python':>9} {'cpu':>8} {'budget':>8}  verdict"
    print(header)
    print("-" * len(header))
    for name, (_, budget) in CASES.items():
        median = statistics.median(times[name])
        shown_budget = "" if budget is None else f"{budget:.0f}"
        if name in RATIO_BUDGETS:
            budget = RATIO_BUDGETS[name] * floor
            shown_budget = f"{RATIO_BUDGETS[name]:.1f}x={budget:.0f}"
        verdict = "" if budget is None else ("ok" if median <= budget else "OVER BUDGET")
        if verdict == "OVER BUDGET":
            over.append(name)
        if name in RATIO_BUDGETS:
            verdict += f" ({median / floor:.2f}x python)"
        print(f"{name:<40} {median:>8.1f} {min(times[name]):>8.1f} {median - floor:>9.1f} "
              f"{statistics.median(cpu[name]):>8.1f} {shown_budget:>8}  {verdict}")
    if over:
        print(f"\nover budget: {', '.join(over)} (profile with --importtime CASE; is the machine busy? see 'min')")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
