"""Secrets given as ``${env:NAME}`` never leave the process in clear.

A project whose stacks read recognisable secrets from the environment (a
token in a secret field, the same kind of value in a plain field, the signing
key of the local stores, a GCS token) is driven through every command: the
listings, ``show``/``validate`` (also ``--json`` and ``--debug``), ``use``,
``add``, runs that succeed, fail, or reuse signed pickles, and the error paths
(a component whose ``validate()`` or ``__init__`` echoes its token, a secret in
a field of the wrong type, a missing variable). After each command the secret
is searched for in:

* stdout and stderr (in-process and through the real console script);
* every log record at DEBUG (a handler on the root logger, in-process);
* the exception and traceback that ``--debug`` lets through (in-process);
* every file under the project, the config directory and ``$HOME``.

The API is checked too: the messages and tracebacks (with their chained
causes) of the errors ``StackRegistry.resolve`` and ``validate()`` raise, and
the reprs of resolved stacks and component configs.
"""

from __future__ import annotations

import os
import secrets as _secrets
import time
import traceback
from pathlib import Path
from typing import Any

import attrs

from tests.reliability.kit import (
    PIPELINE_SOURCE,
    CliResult,
    cli_problems,
    env_for_subprocess,
    environ,
    files_containing,
    install_rl_plugin,
    plugin_path,
    record_logs,
    run_console,
    run_inprocess,
)

SECRET_VAR = "RL_SECRET"
LABEL_VAR = "RL_SECRET_LABEL"

STACKS = """\
# stacks whose options come from the environment
[stacks.sec]
executor = { flavor = "rl-exec", token = "${env:RL_SECRET}", label = "${env:RL_SECRET_LABEL}" }
artifact_store = { flavor = "rl-mem", path = "mem", token = "${env:RL_SECRET}" }
cache_store = "rl-cache"

[stacks.sec-local]
executor = { flavor = "rl-exec", token = "${env:RL_SECRET}" }
artifact_store = { flavor = "local", path = ".flowyml/artifacts", signing_key = "${env:RL_SECRET}" }
cache_store = { flavor = "local", path = ".flowyml/cache", signing_key = "${env:RL_SECRET}" }

[stacks.sec-echo]
executor = { flavor = "rl-exec", token = "${env:RL_SECRET}", label = "echo-token" }

[stacks.sec-init]
executor = { flavor = "rl-exec", token = "${env:RL_SECRET}", label = "init-echo" }

[stacks.sec-type]
executor = { flavor = "rl-exec", workers = "${env:RL_SECRET}", tags = "${env:RL_SECRET_LABEL}" }

[stacks.sec-prefix]
executor = { flavor = "rl-exec", label = "prefix-${env:RL_SECRET}-suffix", workers = "x${env:RL_SECRET}" }

[stacks.sec-missing]
executor = { flavor = "rl-exec", token = "${env:RL_UNSET_SECRET}" }
"""

GCS_STACK = """
[stacks.sec-gcs]
executor = "rl-exec"
artifact_store = { flavor = "gcs", url = "gs://rl-no-such-bucket/x", token = "${env:RL_SECRET}", endpoint = "http://127.0.0.1:9", retries = 0, request_timeout = 2.0 }
"""

#: (argv, expected exit code or None when either is fine)
COMMANDS: list[tuple[list[str], int | None]] = [
    (["plugins"], 0),
    (["plugins", "--json"], 0),
    (["stack", "list"], 0),
    (["stack", "list", "--json"], 0),
    (["stack", "show", "sec"], 0),
    (["stack", "show", "sec", "--json"], 0),
    (["stack", "show", "sec-local", "--json"], 0),
    (["stack", "show", "sec-prefix"], 0),
    (["--debug", "stack", "show", "sec"], 0),
    (["stack", "validate", "sec"], 0),
    (["stack", "validate", "sec", "--json"], 0),
    (["stack", "validate", "sec-local"], 0),
    (["stack", "validate", "sec-echo"], 1),
    (["stack", "validate", "sec-echo", "--json"], 1),
    (["stack", "validate", "sec-init"], 1),
    (["stack", "validate", "sec-type"], 1),
    (["stack", "validate", "sec-prefix"], 1),
    (["stack", "validate", "sec-missing"], 1),
    (["--debug", "stack", "validate", "sec-echo"], 1),
    (["--debug", "stack", "validate", "sec-init"], 1),
    (["--debug", "stack", "validate", "sec-type"], 1),
    (["stack", "use", "sec"], 0),
    (["stack", "show"], 0),
    (["stack", "add", "added", "--executor", 'rl-exec:token="${env:RL_SECRET}"',
      "--artifact-store", 'local:path=.flowyml/a2,signing_key="${env:RL_SECRET}"'], 0),
    (["stack", "show", "added", "--json"], 0),
    (["run", "pipeline.py:pipeline", "--stack", "sec"], 0),
    (["--debug", "run", "pipeline.py:pipeline", "--stack", "sec"], 0),
    (["run", "pipeline.py:failing", "--stack", "sec"], 1),
    (["run", "pipeline.py:objects", "--stack", "sec-local"], 0),
    (["run", "pipeline.py:objects", "--stack", "sec-local"], 0),  # cached: loads the signed pickle
    (["--debug", "run", "pipeline.py:objects", "--stack", "added"], 0),
    (["run", "pipeline.py:pipeline", "--stack", "sec-init"], 1),
    (["run", "pipeline.py:pipeline", "--stack", "sec-type"], 1),
    (["runs", "status", "job-1", "--stack", "sec"], 1),
    (["run", "pipeline.py:failing", "--stack", "sec", "--run-id", "sec-failed"], 1),
    (["runs", "list"], 0),
    (["runs", "list", "--json"], 0),
    (["runs", "show", "sec-failed"], 0),
    (["runs", "show", "sec-failed", "--json"], 0),
    (["show", "pipeline.py:failing", "--run", "sec-failed"], 0),
]
GCS_COMMANDS: list[tuple[list[str], int | None]] = [
    (["stack", "show", "sec-gcs", "--json"], 0),
    (["stack", "validate", "sec-gcs"], 1),
    (["--debug", "stack", "validate", "sec-gcs"], 1),
]


@attrs.define
class Leak:
    where: str
    command: str
    runner: str
    excerpt: str


@attrs.define
class SecretsReport:
    commands: int = 0
    console_commands: int = 0
    log_records: int = 0
    files_scanned: int = 0
    api_checks: int = 0
    leaks: list[Leak] = attrs.Factory(list)
    other_problems: list[str] = attrs.Factory(list)
    gcs_covered: bool = False
    seconds: float = 0.0


def _excerpt(text: str, secret: str) -> str:
    i = text.find(secret)
    return text[max(0, i - 120): i + len(secret) + 40].replace(secret, "<SECRET>")


def _gcs_available() -> bool:
    try:
        import flowyml_gcs.stores  # noqa: F401
    except ImportError:
        return False
    return True


def scan_secrets(workdir: Path, console: bool = True) -> SecretsReport:
    started = time.perf_counter()
    report = SecretsReport()
    secret = "RLSECRET-" + _secrets.token_hex(12)
    label_secret = "RLLABEL-" + _secrets.token_hex(12)
    needles = {"secret": secret, "label secret": label_secret}
    plugin_root = install_rl_plugin(workdir / "plugins")
    gcs = _gcs_available()
    report.gcs_covered = gcs
    commands = COMMANDS + (GCS_COMMANDS if gcs else [])

    runners = [("in-process", workdir / "inproc")] + ([("console", workdir / "console")] if console else [])
    for runner, base in runners:
        project, xdg, home = base / "project", base / "xdg", base / "home"
        for d in (project, xdg, home):
            d.mkdir(parents=True, exist_ok=True)
        (project / "stacks.toml").write_text(STACKS + (GCS_STACK if gcs else ""), encoding="utf-8")
        (project / "pipeline.py").write_text(PIPELINE_SOURCE, encoding="utf-8")
        env = {"XDG_CONFIG_HOME": str(xdg), "HOME": str(home), SECRET_VAR: secret, LABEL_VAR: label_secret,
               "FLOWYML_STACK": None, "FLOWYML_STACKS_FILE": None, "FLOWYML_DISABLE_PLUGINS": None,
               "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "RL_UNSET_SECRET": None}
        for argv, expected in commands:
            label = " ".join(argv)
            if runner == "in-process":
                with environ(env), plugin_path(plugin_root), record_logs() as logs:
                    result = run_inprocess(argv, cwd=project)
                report.commands += 1
                report.log_records += len(logs.texts)
                for text in logs.texts:
                    for what, needle in needles.items():
                        if needle in text:
                            report.leaks.append(Leak(f"log record ({what})", label, runner, _excerpt(text, needle)))
            else:
                full_env = env_for_subprocess([plugin_root])
                for key, value in env.items():
                    if value is None:
                        full_env.pop(key, None)
                    else:
                        full_env[key] = value
                result = run_console(argv, cwd=project, env=full_env)
                report.console_commands += 1
            _check_output(report, result, label, runner, needles, expected)
            for what, needle in needles.items():
                for path in files_containing(needle.encode(), project, xdg, home):
                    report.leaks.append(Leak(f"written file ({what})", label, runner, path))
        report.files_scanned += sum(len(files) for d in (project, xdg, home) for _, _, files in os.walk(d))

    with environ({"XDG_CONFIG_HOME": str(workdir / "inproc" / "xdg"), SECRET_VAR: secret, LABEL_VAR: label_secret,
                  "FLOWYML_STACK": None, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}), \
            plugin_path(plugin_root), record_logs() as logs:
        _check_api(report, workdir / "inproc" / "project", needles, gcs)
        for text in logs.texts:
            for what, needle in needles.items():
                if needle in text:
                    report.leaks.append(Leak(f"log record ({what})", "API", "in-process", _excerpt(text, needle)))
    report.seconds = time.perf_counter() - started
    return report


def _check_output(report: SecretsReport, result: CliResult, label: str, runner: str, needles: dict[str, str],
                  expected: int | None) -> None:
    debug = result.argv[:1] == ["--debug"]
    for stream, text in (("stdout", result.out), ("stderr", result.err), ("escaped exception", result.uncaught or "")):
        for what, needle in needles.items():
            if needle in text:
                report.leaks.append(Leak(f"{stream} ({what})", label, runner, _excerpt(text, needle)))
    if debug:
        return  # --debug lets exceptions (and tracebacks) through by design
    if expected is not None and result.code != expected:
        report.other_problems.append(f"{runner}: flowyml {label}: exit {result.code}, expected {expected}: "
                                     f"{(result.err or result.out)[-400:]!r}")
    for problem in cli_problems(result):
        report.other_problems.append(f"{runner}: flowyml {label}: {problem}")


def _check_api(report: SecretsReport, project: Path, needles: dict[str, str], gcs: bool) -> None:
    """Errors and reprs reached through the Python API."""
    from flowyml_core.stacks import StackRegistry

    cwd = os.getcwd()
    os.chdir(project)
    try:
        registry = StackRegistry.load()
        for name in ("sec-echo", "sec-init", "sec-type", "sec-prefix", "sec-missing") + (("sec-gcs",) if gcs else ()):
            report.api_checks += 1
            try:
                stack = registry.resolve(name)
                problems = stack.validate()
                texts = ["\n".join(problems), repr(stack)]
            except Exception as exc:  # the error itself is what is inspected
                texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
            for text in texts:
                for what, needle in needles.items():
                    if needle in text:
                        report.leaks.append(Leak(f"API error/repr ({what})", f"resolve({name!r})", "in-process",
                                                 _excerpt(text, needle)))
        for name in ("sec", "sec-local"):
            report.api_checks += 1
            stack = registry.resolve(name)
            texts = [repr(stack)] + [repr(c) for c in stack.components.values()] + \
                    [repr(getattr(c, "config", None)) for c in stack.components.values()]
            # A plugin's own config repr may show its plain fields; secret_field() values must not show.
            for text in texts:
                if needles["secret"] in text:
                    report.leaks.append(Leak("repr of a resolved component (secret field)", f"resolve({name!r})",
                                             "in-process", _excerpt(text, needles["secret"])))
    finally:
        os.chdir(cwd)


def as_dict(report: SecretsReport) -> dict[str, Any]:
    return attrs.asdict(report)
