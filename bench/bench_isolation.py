"""Per-step overhead of ``isolation = "process"`` against a bare ``multiprocessing`` spawn.

    .venv/bin/python bench/bench_isolation.py              # the table (median of 15, about 15 s)
    .venv/bin/python bench/bench_isolation.py --repeat 31  # steadier on a busy machine
    .venv/bin/python bench/bench_isolation.py --json       # the row as JSON

Both sides run the same trivial function (``_isolation_work.work``) in a fresh
Python process and get its value back:

* flowyml: ``LocalExecutor(isolation="process").execute_step(step, ...)``, i.e.
  one execution unit: ``run_step`` here, the process started, the function
  sent by reference and called there, its value sent back, the process ended
  (with the stores left out, so what is timed is the isolation itself);
* baseline: ``multiprocessing.get_context("spawn").Process`` running the
  function and sending its value through a ``Pipe``, then ``join()``.

The two alternate (``_timing.compare``) so a busy moment hits both; the ratio
of the medians is the figure to compare across machines, with a 1.5x target.
A second row, for information, sends 100 MB (``--data-mb``) to the function
and back on both sides: what large inputs and outputs cost on top.
:func:`measure` runs the benchmark in a fresh interpreter and returns the row,
for other benchmarks' tables (``bench_docker.py``): ``multiprocessing`` spawn
re-imports the calling script in every child, which must not be theirs.
"""

from __future__ import annotations

# Only what every process imports anyway: multiprocessing re-imports this file in each baseline child.
import os
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = 1.5
CASE = "process isolation, one step"


def _measure_here(repeat: int) -> dict[str, Any]:
    sys.path.insert(0, HERE)
    import multiprocessing

    from _isolation_work import run_and_send, work
    from _timing import compare

    from flowyml_core.step import Step
    from flowyml_local.executor import LocalExecutor, LocalExecutorConfig

    executor = LocalExecutor(LocalExecutorConfig(isolation="process"))
    step = Step(func=work, cache=False)
    spawn = multiprocessing.get_context("spawn")

    def ours() -> None:
        result = executor.execute_step(step, {"x": 1}, {})
        assert result.success and result.output == 2, result.error

    def bare() -> None:
        receive, send = spawn.Pipe(duplex=False)
        process = spawn.Process(target=run_and_send, args=(send, 1))
        process.start()
        send.close()
        value = receive.recv()
        process.join()
        assert value == 2 and process.exitcode == 0

    ours(), bare()  # warm up: page cache, .pyc files, multiprocessing's resource tracker
    return _row(CASE, compare(ours, bare, repeat), repeat, TARGET)


def _row(case: str, timings: Any, repeat: int, target: float | None) -> dict[str, Any]:
    (o_best, o_med), (r_best, r_med) = timings
    ratio = o_med / r_med
    verdict = "" if target is None else ("ok" if ratio <= target else "OVER TARGET")
    return {
        "case": case, "flowyml_best": o_best, "flowyml_median": o_med, "baseline_best": r_best,
        "baseline_median": r_med, "ratio": ratio, "target": target, "repeat": repeat, "verdict": verdict,
    }


def _measure_data(megabytes: int, repeat: int) -> dict[str, Any]:
    """For information: the same, with ``megabytes`` of bytes sent to the function and back."""
    sys.path.insert(0, HERE)
    import multiprocessing

    from _isolation_work import echo, echo_and_send
    from _timing import compare

    from flowyml_core.step import Step
    from flowyml_local.executor import LocalExecutor, LocalExecutorConfig

    executor = LocalExecutor(LocalExecutorConfig(isolation="process"))
    step = Step(func=echo, cache=False)
    spawn = multiprocessing.get_context("spawn")
    payload = os.urandom(megabytes * 1024 * 1024)

    def ours() -> None:
        result = executor.execute_step(step, {"data": payload}, {})
        assert result.success and len(result.output) == len(payload), result.error

    def bare() -> None:
        here, there = spawn.Pipe()
        process = spawn.Process(target=echo_and_send, args=(there,))
        process.start()
        there.close()
        here.send(payload)
        value = here.recv()
        process.join()
        assert len(value) == len(payload)

    return _row(f"{megabytes} MB in and back (info)", compare(ours, bare, repeat), repeat, None)


def measure(repeat: int = 15) -> dict[str, Any]:
    """The benchmark's row, measured in a fresh interpreter (see the module docstring)."""
    import json
    import subprocess

    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--json", "--repeat", str(repeat)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def print_rows(rows: list[dict[str, Any]]) -> None:
    print(f"{'case':<30}{'flowyml':>18}{'multiprocessing':>20}{'ratio':>8}{'target':>8}  verdict")
    print("-" * 92)
    for row in rows:
        target = "-" if row["target"] is None else f"{row['target']:.1f}x"
        print(f"{row['case']:<30}{row['flowyml_median'] * 1000:>9.1f} ms [{row['flowyml_best'] * 1000:.0f}]"
              f"{row['baseline_median'] * 1000:>11.1f} ms [{row['baseline_best'] * 1000:.0f}]"
              f"{row['ratio']:>7.2f}x{target:>8}  {row['verdict']}")


def main() -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="rounds of each side (default 15)")
    parser.add_argument("--json", action="store_true", help="print the target row as JSON (no data row)")
    parser.add_argument("--data-mb", type=int, default=100, help="size of the data row (0: no data row)")
    args = parser.parse_args()
    row = _measure_here(args.repeat)
    if args.json:
        print(json.dumps(row))
        return 0 if row["verdict"] == "ok" else 1
    rows = [row]
    if args.data_mb:
        rows.append(_measure_data(args.data_mb, max(3, args.repeat // 3)))
    load = os.getloadavg()[0]
    print(f"flowyml isolation = \"process\" vs bare multiprocessing spawn (python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cpus, median of {args.repeat} [best], data row {rows[-1]['repeat']}; "
          f"load average {load:.1f})")
    print_rows(rows)
    return 0 if row["verdict"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
