"""The ``flowyml`` command.

Exit codes: 0 ok, 1 a problem the user can fix (one line on stderr, no
traceback unless ``--debug``), 2 bad usage. Listing commands accept ``--json``.
Only the modules a command needs are imported: ``flowyml stack list`` loads no
plugin at all.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from flowyml_core.errors import FlowymlError

logger = logging.getLogger("flowyml.cli")


def _out(data: Any, as_json: bool, text: Callable[[], str]) -> None:
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        print(text())


# -- plugins ----------------------------------------------------------------
def cmd_plugins(args: argparse.Namespace) -> int:
    from flowyml_core.plugins import API_VERSION, get_registry

    registry = get_registry()
    plugins = [info.as_dict() for info in registry.plugins.values()]
    conflicts = [
        {"kind": kind, "flavor": name, "plugins": owners} for (kind, name), owners in sorted(registry.conflicts.items())
    ]
    data = {"api_version": API_VERSION, "plugins": plugins, "conflicts": conflicts}

    def text() -> str:
        if not plugins:
            from flowyml_core.plugins import install_command

            return f"no flowyml plugins installed; the local components come with: {install_command('flowyml-local')}"
        lines = []
        for p in plugins:
            version = f" {p['version']}" if p["version"] else ""
            state = " [disabled by FLOWYML_DISABLE_PLUGINS]" if p["blocked"] else ""
            lines.append(f"{p['name']}{version} ({p['distribution'] or 'in-process'}){state}")
            for kind, names in sorted(p["flavors"].items()):
                lines.append(f"  {kind}: {', '.join(names)}")
            if p["error"]:
                lines.append(f"  ERROR: {p['error']}")
            if p["api_problem"]:
                lines.append(f"  INCOMPATIBLE: {p['api_problem']}; not used: its flavors are refused and its hooks "
                             "are not called")
        for c in conflicts:
            lines.append(f"CONFLICT: {c['kind']} flavor {c['flavor']!r} is registered by {' and '.join(c['plugins'])}")
        return "\n".join(lines)

    _out(data, args.json, text)
    return 0


# -- stacks -------------------------------------------------------------------
def _registry() -> Any:
    from flowyml_core.stacks import StackRegistry

    return StackRegistry.load()


def cmd_stack_list(args: argparse.Namespace) -> int:
    registry = _registry()
    active, why = registry.active(getattr(args, "stack", None))
    rows = [
        {
            "name": name,
            "origin": spec.origin,
            "active": name == active,
            "default": name == registry.default,
            "executor": spec.components["executor"].flavor,
            "description": spec.description,
        }
        for name, spec in sorted(registry.stacks.items())
    ]
    data = {"active": active, "active_because": why, "stacks": rows}

    def text() -> str:
        from flowyml_core.stacks import printable

        names = {r["name"]: printable(r["name"]) for r in rows}
        width = max(len(n) for n in names.values())
        lines = [
            f"{'*' if r['active'] else ' '} {names[r['name']]:<{width}}  {printable(r['executor']):<10} "
            f"{printable(r['origin'])}"
            for r in rows
        ]
        if active not in registry.stacks:
            lines.append(f"active stack {active!r} ({printable(why)}) is not defined")
        else:
            lines.append(f"(* active: {printable(active)}, from {printable(why)})")
        return "\n".join(lines)

    _out(data, args.json, text)
    return 0


def cmd_stack_show(args: argparse.Namespace) -> int:
    from flowyml_core.config import mask_options
    from flowyml_core.errors import PluginError
    from flowyml_core.plugins import get_registry

    registry = _registry()
    name, why = registry.active(args.name)
    spec = registry.get(name, why)
    plugins = get_registry()
    components = {}
    for kind, comp in spec.components.items():
        entry: dict[str, Any] = {"flavor": comp.flavor}
        try:
            flavor = plugins.flavor(kind, comp.flavor)
            entry["plugin"] = flavor.plugin
            config_cls = flavor.load()[1]
        except PluginError as exc:
            entry["problem"] = str(exc)
            config_cls = None
        entry["options"] = mask_options(comp.options, config_cls)
        components[kind] = entry
    data = {"name": name, "origin": spec.origin, "active_because": why if not args.name else "named", "components": components}

    def text() -> str:
        from flowyml_core.stacks import printable

        lines = [f"stack {printable(name)} ({printable(spec.origin)})"]
        for kind, entry in components.items():
            plugin = f" [plugin {printable(entry['plugin'])}]" if "plugin" in entry else ""
            lines.append(f"  {kind}: {printable(entry['flavor'])}{plugin}")
            for key, value in entry["options"].items():
                lines.append(f"    {printable(str(key))} = {value!r}")
            if "problem" in entry:
                lines.append(f"    PROBLEM: {entry['problem']}")
        return "\n".join(lines)

    _out(data, args.json, text)
    return 0


def cmd_stack_use(args: argparse.Namespace) -> int:
    from flowyml_core.stack_edit import use_stack
    from flowyml_core.stacks import printable

    path = use_stack(_registry(), args.name)
    print(f"active stack: {printable(args.name)} (saved in {path})")
    return 0


def cmd_stack_add(args: argparse.Namespace) -> int:
    from flowyml_core.stack_edit import add_stack, parse_component_arg
    from flowyml_core.stacks import COMPONENT_KINDS, parse_stack, printable

    components: dict[str, Any] = {}
    for kind in COMPONENT_KINDS:
        value = getattr(args, kind)
        if value is not None:
            components[kind] = parse_component_arg(kind, value)
    from flowyml_core.stacks import StackRegistry

    # The one command that may create the file FLOWYML_STACKS_FILE names: it was asked to write there.
    registry = StackRegistry.load(missing_ok=True)
    problems: list[str] = []
    spec = parse_stack(args.name, components, "command line", problems)
    if spec is not None:
        _check_flavors(spec, problems)
    if problems:
        raise FlowymlError("stack not added:\n  " + "\n  ".join(problems))
    created = not registry.project_file.exists
    path = add_stack(registry, args.name, components)
    print(f"added stack {printable(args.name)} to {path}" + (" (new file)" if created else ""))
    return 0


def _check_flavors(spec: Any, problems: list[str]) -> None:
    """Structure each component's options without resolving env references."""
    from flowyml_core.config import has_env_ref
    from flowyml_core.errors import PluginError
    from flowyml_core.plugins import get_registry
    from flowyml_core.stacks import structure_config

    plugins = get_registry()
    for kind, comp in spec.components.items():
        where = f"{kind} {comp.flavor!r}"
        try:
            _, config_cls = plugins.flavor(kind, comp.flavor).load()
        except PluginError as exc:
            problems.append(f"{where}: {exc}")
            continue
        plain = {k: v for k, v in comp.options.items() if not has_env_ref(v)}
        if config_cls is not None:
            import attrs

            required = {f.name for f in attrs.fields(config_cls) if f.default is attrs.NOTHING}
            plain.update({k: "" for k, v in comp.options.items() if has_env_ref(v) and k in required})
        local: list[str] = []
        structure_config(config_cls, plain, where, set(), local)
        problems.extend(local)


def cmd_stack_remove(args: argparse.Namespace) -> int:
    from flowyml_core.stack_edit import forget_active, remove_stack
    from flowyml_core.stacks import printable

    registry = _registry()
    path = remove_stack(registry, args.name)
    print(f"removed stack {printable(args.name)} from {path}")
    for warning in forget_active(registry, args.name):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def cmd_stack_validate(args: argparse.Namespace) -> int:
    registry = _registry()
    name, _ = registry.active(args.name)
    try:
        stack = registry.resolve(name)
    except FlowymlError as exc:
        if not args.json:
            raise
        # The same shape as a failed validate(): one entry per problem; and, like every error, its line on stderr.
        problems = list(getattr(exc, "problems", None) or [str(exc)])
        _out({"name": name, "valid": False, "problems": problems, "error": str(exc)}, True, str)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    problems = stack.validate()
    if args.json:
        _out({"name": name, "valid": not problems, "problems": problems}, True, str)
        return 1 if problems else 0
    if problems:
        raise FlowymlError(f"stack {name!r} failed validation:\n  " + "\n  ".join(problems))
    print(f"stack {name} is valid")
    return 0


# -- run ------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from flowyml_core.loader import load_pipeline
    from flowyml_core.params import check_params, parse_param_items
    from flowyml_core.pipeline import run_on_stack
    from flowyml_core.plugins import get_registry
    from flowyml_core.progress import Progress
    from flowyml_core.stacks import StackRegistry, printable

    raw_params = parse_param_items(args.param)
    pipeline = load_pipeline(args.target)
    pipeline.build()
    params = check_params(pipeline, raw_params)
    stack = StackRegistry.load().resolve(args.stack)
    plugins = get_registry()
    progress = Progress(pipeline, stack.name, sys.stdout, secrets=stack.secrets)
    plugins.pm.register(progress, name="flowyml-cli-progress")
    started = time.perf_counter()
    submission = None
    interrupt = _InterruptRecorder()
    try:
        with interrupt:
            result = run_on_stack(
                pipeline, stack, context=params, run_id=args.run_id, wait=False,
                source=args.target, registry=plugins,
            )
            submission = result.submission
            if submission is not None and not args.no_wait:
                status = _wait_for_remote(stack, submission, args.timeout, args.follow)
                result = submission.result(status, result.run_id)
    except KeyboardInterrupt:
        if submission is not None:
            raise KeyboardInterrupt(
                f"while waiting for {submission.job_id}, which goes on remotely; cancel it with: "
                f"flowyml runs stop {submission.job_id} --stack {printable(stack.name)}"
            ) from None
        raise KeyboardInterrupt(progress.interrupted(interrupt.frames)) from None
    finally:
        plugins.pm.unregister(name="flowyml-cli-progress")
    return progress.summary(result, stack, time.perf_counter() - started)


class _InterruptRecorder:
    """While active, Ctrl-C first notes every thread's frames, then interrupts as usual.

    The frames say which steps were running: by the time KeyboardInterrupt
    reaches the CLI the stacks have unwound, and worker threads have finished.
    Only the default handler is replaced, and only in the main thread.
    """

    def __init__(self) -> None:
        self.frames: list[Any] = []
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.frames = [frame, *sys._current_frames().values()]
        raise KeyboardInterrupt

    def __enter__(self) -> _InterruptRecorder:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            import signal

            signal.signal(signal.SIGINT, self._previous)


def _wait_for_remote(stack: Any, submission: Any, timeout: float | None, follow: bool) -> Any:
    """Wait for a remote run (streaming its logs with ``--follow``), within ``timeout``."""
    import threading

    streamer = None
    if follow:
        print(f"following {submission.job_id}", flush=True)
        streamer = threading.Thread(
            target=_print_log_entries, args=(stack.executor.stream_logs(submission.job_id), False),
            name="flowyml-follow", daemon=True,
        )
        streamer.start()
    try:
        status = submission.wait(timeout)
    except TimeoutError:
        raise FlowymlError(
            f"run {submission.job_id} is still running after {timeout:g}s; it goes on remotely. "
            f"Check it with: flowyml runs status {submission.job_id} --stack {stack.name}"
        ) from None
    if streamer is not None:
        # The stream ends by itself once it sees the job finished; give it a poll or two.
        streamer.join(timeout=30)
    return status


def _print_log_entries(entries: Any, as_json: bool) -> None:
    for entry in entries:
        if as_json:
            print(json.dumps(entry, default=str), flush=True)
        else:
            stamp = entry.get("timestamp") or "-"
            print(f"[{stamp}] [{entry.get('severity', 'INFO')}] {entry.get('message', '')}", flush=True)


# -- runs -------------------------------------------------------------------------
def _orchestrator(stack_name: str | None) -> Any:
    from flowyml_core.components import RemoteOrchestrator
    from flowyml_core.stacks import StackRegistry

    stack = StackRegistry.load().resolve(stack_name)
    if not isinstance(stack.executor, RemoteOrchestrator):
        flavor = stack.spec.components["executor"].flavor
        raise FlowymlError(
            f"stack {stack.name!r} runs on executor {flavor!r}, which does not track remote runs; "
            "pass --stack with a remote stack (e.g. a vertex one)"
        )
    return stack.executor


def cmd_runs(args: argparse.Namespace) -> int:
    orchestrator = _orchestrator(args.stack)
    if args.action == "status":
        status = orchestrator.get_run_status(args.job_id)
        details = orchestrator.get_run_details(args.job_id) if args.json else {}
        _out({"job_id": args.job_id, "status": status.value, **details}, args.json, lambda: status.value)
        return 0 if not status.is_failed else 1
    if args.action == "logs":
        if args.follow:
            _print_log_entries(orchestrator.stream_logs(args.job_id), as_json=args.json)
            return 0
        print(orchestrator.get_run_logs(args.job_id))
        return 0
    orchestrator.stop_run(args.job_id)
    print(f"cancellation requested for {args.job_id}")
    return 0


# -- cache ------------------------------------------------------------------------
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _parse_age(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``45s``, ``2w`` (or plain seconds) as seconds."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if match is None:
        raise FlowymlError(f"--older-than {text!r}: give a number and a unit (s, m, h, d or w), e.g. 7d or 12h")
    return float(match.group(1)) * _AGE_UNITS[match.group(2) or "s"]


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - the loop returns


def cmd_cache_prune(args: argparse.Namespace) -> int:
    """Free the stack's cache and artifact stores of what no run will read (see docs/reference/stores.md)."""
    from flowyml_core.stacks import StackRegistry, scrub

    older_than = _parse_age(args.older_than) if args.older_than is not None else None
    if args.keep_runs is not None and args.keep_runs < 0:
        raise FlowymlError(f"--keep-runs {args.keep_runs}: give how many of the newest runs to keep (0 or more)")
    stack = StackRegistry.load().resolve(args.stack)
    secrets = list(getattr(stack, "_secrets", ()))
    reports: dict[str, Any] = {}
    # Artifacts first: cache entries that referred to removed artifacts are then removed with the cache's leftovers.
    for kind, label in (("artifact_store", "artifact store"), ("cache_store", "cache store")):
        store = getattr(stack, kind, None)
        if store is None:
            continue
        if kind == "artifact_store":
            report = dict(store.prune(older_than=older_than, keep_runs=args.keep_runs, dry_run=args.dry_run))
        else:
            report = dict(store.prune(older_than=older_than, dry_run=args.dry_run))
        flavor = stack.spec.components[kind].flavor
        where = scrub(str(getattr(store, "root", "") or ""), secrets)
        reports[kind] = {"flavor": flavor, "root": where, **report}
    freed = sum(int(r.get("bytes", 0)) for r in reports.values())
    data = {"stack": stack.name, "dry_run": args.dry_run, "bytes": freed, "stores": reports}

    def text() -> str:
        verb, free = ("would remove", "would free") if args.dry_run else ("removed", "freed")
        lines = []
        for kind, r in reports.items():
            name = f"{kind.replace('_', ' ')} ({r['flavor']}{', ' + r['root'] if r['root'] else ''})"
            if r.get("supported") is False:
                lines.append(f"{name}: its flavor cannot prune; nothing removed")
            elif not r.get("removed"):
                lines.append(f"{name}: nothing to remove")
            else:
                what = ", ".join(f"{n} {k if n != 1 else k.rstrip('s')}" for k, n in r["removed"].items())
                lines.append(f"{name}: {verb} {what}; {free} {_size(int(r.get('bytes', 0)))}")
        if not reports:
            lines.append(f"stack {stack.name!r} has no cache store and no artifact store: nothing to prune")
        lines.append(f"dry run: nothing was deleted; {free} {_size(freed)} in total" if args.dry_run
                     else f"{free} {_size(freed)} in total")
        return "\n".join(lines)

    _out(data, args.json, text)
    return 0


def cmd_step_runner(args: argparse.Namespace) -> int:
    from flowyml_core.step_runner import main as step_runner_main

    return step_runner_main(os.environ)


def cmd_plugin_new(args: argparse.Namespace) -> int:
    from flowyml_core.scaffold import new_plugin

    path = new_plugin(args.name, kind=args.kind, directory=Path(args.directory))
    print(f"created plugin package in {path}")
    print(f'next: pip install -e "{path}[test]" && flowyml plugins')
    return 0


# -- parser ---------------------------------------------------------------------------
def _columns() -> int:
    """The terminal width as shutil.get_terminal_size computes it, without importing shutil."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 80


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter with the width given.

    argparse builds a formatter for every add_argument, and the default one
    imports shutil (and with it bz2, lzma, fnmatch) for the terminal width:
    a few ms on every start of every command, for help that is rarely shown.
    """

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, width if width is not None else _columns() - 2)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowyml", description="Run ML pipelines on named stacks.",
                                     formatter_class=_Formatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    # Also accepted after the command (``flowyml stack show x --debug``); SUPPRESS
    # keeps a subcommand from resetting a --debug given before it.
    common = argparse.ArgumentParser(add_help=False, formatter_class=_Formatter)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version="flowyml-core 0.1.0")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("plugins", parents=[common], formatter_class=_Formatter, help="installed plugins, versions, flavors and load errors")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    stack = sub.add_parser("stack", parents=[common], formatter_class=_Formatter, help="list, show, switch and edit stacks").add_subparsers(
        dest="stack_command", required=True, metavar="ACTION"
    )
    p = stack.add_parser("list", parents=[common], formatter_class=_Formatter, help="stacks, their file, the active one marked")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stack_list)
    p = stack.add_parser("show", parents=[common], formatter_class=_Formatter, help="components and options (secrets masked)")
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stack_show)
    p = stack.add_parser("use", parents=[common], formatter_class=_Formatter, help="make a stack the active one")
    p.add_argument("name")
    p.set_defaults(func=cmd_stack_use)
    p = stack.add_parser("add", parents=[common], formatter_class=_Formatter, help="add a stack to ./stacks.toml (or $FLOWYML_STACKS_FILE, created if missing)")
    p.add_argument("name")
    p.add_argument("--executor", required=True, metavar="FLAVOR[:k=v,...]")
    p.add_argument("--artifact-store", dest="artifact_store", metavar="FLAVOR[:k=v,...]")
    p.add_argument("--cache-store", dest="cache_store", metavar="FLAVOR[:k=v,...]")
    p.add_argument("--router", metavar="FLAVOR[:k=v,...]")
    p.set_defaults(func=cmd_stack_add)
    p = stack.add_parser("remove", parents=[common], formatter_class=_Formatter, help="remove a stack from its stacks.toml")
    p.add_argument("name")
    p.set_defaults(func=cmd_stack_remove)
    p = stack.add_parser("validate", parents=[common], formatter_class=_Formatter, help="build the stack and run each component's validate()")
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stack_validate)

    p = sub.add_parser("run", parents=[common], formatter_class=_Formatter, help="run a pipeline: flowyml run MODULE_OR_FILE:PIPELINE")
    p.add_argument("target", metavar="MODULE_OR_FILE:PIPELINE")
    p.add_argument("--stack")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--run-id", dest="run_id")
    p.add_argument("--no-wait", dest="no_wait", action="store_true", help="remote stacks: return after submitting")
    p.add_argument("--follow", action="store_true", help="remote stacks: stream logs while waiting")
    p.add_argument("--timeout", type=float, help="remote stacks: give up waiting after this many seconds")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("runs", parents=[common], formatter_class=_Formatter, help="status, logs or stop of a remote run")
    p.add_argument("action", choices=["status", "logs", "stop"])
    p.add_argument("job_id")
    p.add_argument("--stack")
    p.add_argument("--follow", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    cache = sub.add_parser("cache", parents=[common], formatter_class=_Formatter, help="housekeeping of the stack's cache and artifact stores").add_subparsers(
        dest="cache_command", required=True, metavar="ACTION"
    )
    p = cache.add_parser("prune", parents=[common], formatter_class=_Formatter,
                         help="remove leftovers of interrupted writes, old cache entries and old runs' artifacts")
    p.add_argument("--stack")
    p.add_argument("--older-than", dest="older_than", metavar="AGE",
                   help="also cache entries and runs older than AGE (e.g. 7d, 12h, 30m)")
    p.add_argument("--keep-runs", dest="keep_runs", type=int, metavar="N",
                   help="keep the artifacts of the N newest runs of each project (alone: remove every older run)")
    p.add_argument("--dry-run", dest="dry_run", action="store_true", help="say what would be removed; delete nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_cache_prune)

    p = sub.add_parser("step-runner", parents=[common], formatter_class=_Formatter, help="run steps inside a container (reads FLOWYML_* variables)")
    p.set_defaults(func=cmd_step_runner)

    plugin = sub.add_parser("plugin", parents=[common], formatter_class=_Formatter, help="plugin authoring tools").add_subparsers(
        dest="plugin_command", required=True, metavar="ACTION"
    )
    p = plugin.add_parser("new", parents=[common], formatter_class=_Formatter, help="generate a plugin package that passes the conformance kit")
    p.add_argument("name")
    p.add_argument("--kind", choices=["executor", "cache_store", "artifact_store", "router"], default="executor")
    p.add_argument("--directory", default=".")
    p.set_defaults(func=cmd_plugin_new)
    return parser


class _OneLineFormatter(logging.Formatter):
    """Log records as one line each: no traceback unless ``--debug``.

    Libraries log with ``logger.exception`` (gcsfs does when it runs out of
    retries), which put a 40-line traceback on stderr before the one-line
    ``error:`` that says what went wrong.
    """

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record).split("\n", 1)[0]
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    log_format = "%(levelname)s %(name)s: %(message)s"
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(log_format) if args.debug else _OneLineFormatter(log_format))
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, handlers=[handler])
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is seen below
        return code
    except FlowymlError as exc:
        if args.debug:
            raise
        _json_error(args, str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(f"interrupted {exc}" if str(exc) else "interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``flowyml … | head``): stop quietly, as other tools do.
        from flowyml_core.progress import discard_output

        discard_output(sys.stdout)
        return 0
    except Exception as exc:
        if args.debug:
            raise
        message = f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)"
        _json_error(args, message)
        print(f"error: {message}", file=sys.stderr)
        return 1


def _json_error(args: argparse.Namespace, message: str) -> None:
    """With ``--json``, a failure is a JSON object on stdout too, so scripts never parse an empty output."""
    if getattr(args, "json", False):
        print(json.dumps({"error": message, "command": _command_name(args)}, sort_keys=True))


def _command_name(args: argparse.Namespace) -> str:
    parts = [args.command]
    for attr in ("stack_command", "plugin_command", "action"):
        value = getattr(args, attr, None)
        if isinstance(value, str):
            parts.append(value)
    return " ".join(parts)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
