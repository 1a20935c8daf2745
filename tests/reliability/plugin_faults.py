"""Broken plugins next to healthy ones: the CLI and the healthy stacks keep working, each problem is reported.

Throwaway distributions (a ``NAME-0.1.dist-info/entry_points.txt`` and a
module, in a directory on ``sys.path`` / ``PYTHONPATH``) are found by the
core's real entry-point scanner:

* ``rl-broken``  raises at import;
* ``rl-dup``     registers executor ``rl-exec``, which ``rl`` registers too;
* ``rl-init``    registers an executor whose ``__init__`` raises;
* ``rl-hook``    its ``register_executors`` raises after one good registration;
* ``rl-future``  declares plugin API 9.0;
* ``rl-badpath`` registers a flavor whose module does not exist;
* ``rl-good``    a healthy plugin (executor ``rl-good-exec``).

Every command runs in-process and through the real console script.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import attrs

from tests.reliability.kit import (
    PIPELINE_SOURCE,
    CliResult,
    cli_problems,
    env_for_subprocess,
    environ,
    install_rl_plugin,
    make_dist,
    plugin_path,
    run_console,
    run_inprocess,
)

BROKEN_MESSAGE = "broken plugin on purpose"
INIT_MESSAGE = "cannot start: init failure on purpose"
HOOK_MESSAGE = "hook failure on purpose"

PLUGINS: dict[str, dict[str, str]] = {
    "rl-broken": {
        "rl_broken.py": f'raise RuntimeError("{BROKEN_MESSAGE}")\n',
    },
    "rl-dup": {
        "rl_dup.py": '''
            from flowyml_core import hookimpl

            @hookimpl
            def register_executors(register):
                register("rl-exec", "rl_impl:Exec", config="rl_impl:ExecConfig", summary="the same name as rl's")
        ''',
    },
    "rl-init": {
        "rl_init.py": '''
            from flowyml_core import hookimpl

            @hookimpl
            def register_executors(register):
                register("rl-init-exec", "rl_init_impl:Exec", summary="raises when built")
        ''',
        "rl_init_impl.py": f'''
            from flowyml_core.components import Executor

            class Exec(Executor):
                def __init__(self, config=None):
                    raise RuntimeError("{INIT_MESSAGE}")

                def execute_step(self, step, inputs, context_params, **kwargs):
                    raise AssertionError("never built")
        ''',
    },
    "rl-hook": {
        "rl_hook.py": f'''
            from flowyml_core import hookimpl

            @hookimpl
            def register_executors(register):
                register("rl-hook-exec", "rl_impl:Exec", config="rl_impl:ExecConfig")
                raise RuntimeError("{HOOK_MESSAGE}")
        ''',
    },
    "rl-future": {
        "rl_future.py": '''
            from flowyml_core import hookimpl

            FLOWYML_API_VERSION = "9.0"

            @hookimpl
            def register_executors(register):
                register("rl-future-exec", "rl_impl:Exec", config="rl_impl:ExecConfig")
        ''',
    },
    "rl-badpath": {
        "rl_badpath.py": '''
            from flowyml_core import hookimpl

            @hookimpl
            def register_executors(register):
                register("rl-badpath-exec", "rl_nomodule_here:Exec")
        ''',
    },
    "rl-good": {
        "rl_good.py": '''
            from flowyml_core import hookimpl

            @hookimpl
            def register_executors(register):
                register("rl-good-exec", "rl_impl:Exec", config="rl_impl:ExecConfig", summary="healthy")
        ''',
    },
}

STACKS = """\
# stacks next to broken plugins
[stacks.healthy]
executor = "rl-good-exec"
artifact_store = { flavor = "rl-mem", path = "mem" }
cache_store = "rl-cache"

[stacks.hooked]
executor = "rl-hook-exec"

[stacks.dup]
executor = "rl-exec"

[stacks.init]
executor = "rl-init-exec"
artifact_store = { flavor = "rl-mem", path = "mem" }

[stacks.future]
executor = "rl-future-exec"

[stacks.badpath]
executor = "rl-badpath-exec"
"""


@attrs.define
class Check:
    scenario: str
    argv: list[str]
    runner: str
    ok: bool
    problems: list[str]
    code: int


def install(root: Path) -> list[Path]:
    """All plugin distributions, each in its own sys.path directory; returns the directories."""
    roots = [install_rl_plugin(root / "rl")]
    for dist, modules in PLUGINS.items():
        module = next(iter(modules)).removesuffix(".py")
        roots.append(make_dist(root / dist, dist, {dist: module}, modules))
    return roots


def _contains(*needles: str) -> Callable[[CliResult], list[str]]:
    def check(result: CliResult) -> list[str]:
        text = result.out + result.err
        return [f"output does not mention {n!r}" for n in needles if n not in text]

    return check


def _code(expected: int) -> Callable[[CliResult], list[str]]:
    def check(result: CliResult) -> list[str]:
        if result.code == expected:
            return []
        return [f"exit {result.code}, expected {expected}: {(result.err or result.out)[:300]!r}"]

    return check


def _plugins_json(result: CliResult) -> list[str]:
    try:
        data = json.loads(result.out)
    except ValueError:
        return [f"plugins --json is not JSON: {result.out[:200]!r}"]
    problems = []
    by_name = {p["name"]: p for p in data["plugins"]}
    for name in ("rl-broken", "rl-hook"):
        if not (by_name.get(name) or {}).get("error"):
            problems.append(f"plugins --json has no error for {name}")
    if not (by_name.get("rl-future") or {}).get("api_problem"):
        problems.append("plugins --json has no api_problem for rl-future")
    if not any(c["flavor"] == "rl-exec" and set(c["plugins"]) == {"rl", "rl-dup"} for c in data["conflicts"]):
        problems.append(f"plugins --json does not report the rl-exec conflict: {data['conflicts']}")
    if "rl-good-exec" not in (by_name.get("rl-good") or {}).get("flavors", {}).get("executor", []):
        problems.append("the healthy plugin's flavor is missing from plugins --json")
    if "rl-hook-exec" not in (by_name.get("rl-hook") or {}).get("flavors", {}).get("executor", []):
        problems.append("the registration made before rl-hook's hook raised is lost")
    return problems


#: (scenario, argv, extra env, checks)
SCENARIOS: list[tuple[str, list[str], dict[str, str], list[Callable[[CliResult], list[str]]]]] = [
    ("plugins lists every problem", ["plugins"], {}, [
        _code(0), _contains(BROKEN_MESSAGE, "rl-broken", HOOK_MESSAGE, "CONFLICT", "rl-dup", "9.0", "rl-good-exec"),
    ]),
    ("plugins --json lists every problem", ["plugins", "--json"], {}, [_code(0), _plugins_json]),
    ("stack list works", ["stack", "list"], {}, [
        _code(0), _contains("healthy", "dup", "init", "future", "badpath", "hooked"),
    ]),
    ("stack show of a healthy stack", ["stack", "show", "healthy"], {}, [_code(0), _contains("rl-good-exec")]),
    ("stack show of a conflicted stack shows the problem", ["stack", "show", "dup"], {}, [
        _code(0), _contains("rl-dup", "PROBLEM"),
    ]),
    ("healthy stack validates", ["stack", "validate", "healthy"], {}, [_code(0)]),
    ("healthy stack runs", ["run", "pipeline.py:pipeline", "--stack", "healthy"], {}, [_code(0), _contains("total")]),
    ("a flavor registered before the hook raised works", ["stack", "validate", "hooked"], {}, [_code(0)]),
    ("duplicate flavor names both plugins", ["stack", "validate", "dup"], {}, [
        _code(1), _contains("'dup'", "rl-exec", "rl and rl-dup", "FLOWYML_DISABLE_PLUGINS"),
    ]),
    ("duplicate flavor resolved by disabling one", ["stack", "validate", "dup"], {"FLOWYML_DISABLE_PLUGINS": "rl-dup"}, [
        _code(0),
    ]),
    ("component raising in __init__", ["stack", "validate", "init"], {}, [
        _code(1), _contains("'init'", "rl-init-exec", "could not be created", INIT_MESSAGE),
    ]),
    ("component raising in __init__, run", ["run", "pipeline.py:pipeline", "--stack", "init"], {}, [
        _code(1), _contains("'init'", INIT_MESSAGE),
    ]),
    ("plugin written for another API", ["stack", "validate", "future"], {}, [_code(1), _contains("rl-future", "9.0")]),
    ("flavor whose module is missing", ["stack", "validate", "badpath"], {}, [
        _code(1), _contains("'badpath'", "rl-badpath-exec", "rl_nomodule_here"),
    ]),
    ("unknown stack still a clean error", ["stack", "validate", "nope"], {}, [_code(1), _contains("unknown stack 'nope'")]),
]


def _local_plugin() -> bool:
    try:
        import flowyml_local.executor  # noqa: F401
        import flowyml_local.fsstore  # noqa: F401
    except ImportError:
        return False
    return True


if _local_plugin():  # the built-in local stack, from the real flowyml-local plugin, keeps working too
    SCENARIOS += [
        ("built-in local stack validates", ["stack", "validate", "local"], {}, [_code(0)]),
        ("built-in local stack runs", ["run", "pipeline.py:pipeline", "--stack", "local"], {}, [_code(0), _contains("total")]),
    ]


@attrs.define
class PluginFaultReport:
    checks: list[Check] = attrs.Factory(list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def plugin_faults(workdir: Path, console: bool = True) -> PluginFaultReport:
    """Run every scenario in-process (and through the console script); record what broke."""
    started = time.perf_counter()
    roots = install(workdir / "plugins")
    project = workdir / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "stacks.toml").write_text(STACKS, encoding="utf-8")
    (project / "pipeline.py").write_text(PIPELINE_SOURCE, encoding="utf-8")
    xdg = workdir / "xdg"
    xdg.mkdir(exist_ok=True)
    report = PluginFaultReport()
    base_env = {"XDG_CONFIG_HOME": str(xdg), "FLOWYML_STACK": None, "FLOWYML_STACKS_FILE": None,
                "FLOWYML_DISABLE_PLUGINS": None}
    for scenario, argv, extra, checks in SCENARIOS:
        env = {**base_env, **extra}
        with environ(env), plugin_path(*roots):
            result = run_inprocess(argv, cwd=project)
        report.checks.append(_judge(scenario, argv, "in-process", result, checks))
        if console:
            full_env = {k: v for k, v in env_for_subprocess(roots).items()}
            for key, value in env.items():
                if value is None:
                    full_env.pop(key, None)
                else:
                    full_env[key] = value
            result = run_console(argv, cwd=project, env=full_env)
            report.checks.append(_judge(scenario, argv, "console", result, checks))
    report.seconds = time.perf_counter() - started
    return report


def _judge(scenario: str, argv: list[str], runner: str, result: CliResult, checks: list[Callable[[CliResult], list[str]]]) -> Check:
    problems = cli_problems(result)
    for check in checks:
        problems += check(result)
    return Check(scenario, argv, runner, not problems, problems, result.code)


def as_rows(report: PluginFaultReport) -> list[dict[str, Any]]:
    return [attrs.asdict(c) for c in report.checks]
