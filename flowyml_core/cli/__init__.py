"""The ``flowyml`` command.

Exit codes: 0 ok, 1 a problem the user can fix (one line on stderr, no
traceback unless ``--debug``), 2 bad usage. Listing commands accept ``--json``.
This package builds the parser; each command group is a module of it
(``plugins``, ``stacks``, ``runs``, ``history``, ``cache``, ``show``), named in the parser as
``"module:function"`` and imported only when chosen. A command imports what
it needs when it runs: ``flowyml stack list`` loads no plugin at all.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Callable, Sequence

from flowyml_core.errors import FlowymlError


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

    def add_command(group: Any, name: str, text: str) -> argparse.ArgumentParser:
        return group.add_parser(name, parents=[common], formatter_class=_Formatter, help=text)

    def actions(parser: argparse.ArgumentParser, dest: str) -> Any:
        return parser.add_subparsers(dest=dest, required=True, metavar="ACTION")

    p = add_command(sub, "plugins", "installed plugins, versions, flavors and load errors")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="plugins:cmd_plugins")

    stack = actions(add_command(sub, "stack", "list, show, switch and edit stacks"), "stack_command")
    p = add_command(stack, "list", "stacks, their file, the active one marked")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="stacks:cmd_stack_list")
    p = add_command(stack, "show", "components and options (secrets masked)")
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="stacks:cmd_stack_show")
    p = add_command(stack, "use", "make a stack the active one")
    p.add_argument("name")
    p.set_defaults(func="stacks:cmd_stack_use")
    p = add_command(stack, "add", "add a stack to ./stacks.toml (or $FLOWYML_STACKS_FILE, created if missing)")
    p.add_argument("name")
    p.add_argument("--executor", required=True, metavar="FLAVOR[:k=v,...]")
    p.add_argument("--artifact-store", dest="artifact_store", metavar="FLAVOR[:k=v,...]")
    p.add_argument("--cache-store", dest="cache_store", metavar="FLAVOR[:k=v,...]")
    p.add_argument("--router", metavar="FLAVOR[:k=v,...]")
    p.set_defaults(func="stacks:cmd_stack_add")
    p = add_command(stack, "remove", "remove a stack from its stacks.toml")
    p.add_argument("name")
    p.set_defaults(func="stacks:cmd_stack_remove")
    p = add_command(stack, "validate", "build the stack and run each component's validate()")
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="stacks:cmd_stack_validate")

    p = add_command(sub, "run", "run a pipeline: flowyml run MODULE_OR_FILE:PIPELINE")
    p.add_argument("target", metavar="MODULE_OR_FILE:PIPELINE")
    p.add_argument("--stack")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--run-id", dest="run_id")
    p.add_argument("--no-wait", dest="no_wait", action="store_true", help="remote stacks: return after submitting")
    p.add_argument("--follow", action="store_true", help="remote stacks: stream logs while waiting")
    p.add_argument("--timeout", type=float, help="remote stacks: give up waiting after this many seconds")
    p.set_defaults(func="runs:cmd_run")

    runs = actions(add_command(sub, "runs", "this project's runs: history, status, logs, stop"), "action")
    p = add_command(runs, "list", "the newest runs of this project, on every stack")
    p.add_argument("--stack", help="only the runs on this stack")
    p.add_argument("--pipeline", help="only the runs of this pipeline")
    p.add_argument("--status", help="only the runs with this status (completed, failed, running, ...)")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="at most N runs (default 20; 0: all)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="history:cmd_runs_list")
    p = add_command(runs, "show", "one run: where it ran, its parameters, each step's status")
    p.add_argument("run_id", metavar="RUN_ID", help="a run id, or the start of one")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="history:cmd_runs_show")
    for action, text in (("status", "the status of a run (asked of the orchestrator for a remote run)"),
                         ("logs", "the logs of a remote run"), ("stop", "cancel a remote run")):
        p = add_command(runs, action, text)
        p.add_argument("job_id", metavar="RUN_ID", help="a run id (or the start of one) from `flowyml runs list`, "
                                                        "or a remote job id with --stack")
        p.add_argument("--stack", help="the stack the run was submitted on (default: the one its history names)")
        if action == "logs":
            p.add_argument("--follow", action="store_true", help="stream the logs until the run ends")
        if action != "stop":
            p.add_argument("--json", action="store_true")
        p.set_defaults(func="runs:cmd_runs")

    cache = actions(add_command(sub, "cache", "housekeeping of the stack's cache and artifact stores"), "cache_command")
    p = add_command(cache, "prune", "remove leftovers of interrupted writes, old cache entries and old runs' artifacts")
    p.add_argument("--stack")
    p.add_argument("--older-than", dest="older_than", metavar="AGE",
                   help="also cache entries and runs older than AGE (e.g. 7d, 12h, 30m)")
    p.add_argument("--keep-runs", dest="keep_runs", type=int, metavar="N",
                   help="keep the artifacts of the N newest runs of each project (alone: remove every older run)")
    p.add_argument("--dry-run", dest="dry_run", action="store_true", help="say what would be removed; delete nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func="cache:cmd_cache_prune")

    p = add_command(sub, "show", "a pipeline as a Mermaid or Graphviz diagram, optionally with a run's step statuses")
    p.add_argument("target", metavar="MODULE_OR_FILE:PIPELINE")
    p.add_argument("--format", choices=["mermaid", "dot"], default="mermaid", help="default: mermaid")
    p.add_argument("--run", metavar="RUN_ID", help="colour the steps by how they ended in this run (or the start "
                                                   "of its id; see `flowyml runs list`)")
    p.add_argument("--direction", choices=["TD", "LR"], default="TD", help="top-down (default) or left-right")
    p.add_argument("--output", "-o", metavar="FILE", help="write the diagram to FILE instead of stdout")
    p.set_defaults(func="show:cmd_show")

    p = add_command(sub, "step-runner", "run steps inside a container (reads FLOWYML_* variables)")
    p.set_defaults(func="runs:cmd_step_runner")

    plugin = actions(add_command(sub, "plugin", "plugin authoring tools"), "plugin_command")
    p = add_command(plugin, "new", "generate a plugin package that passes the conformance kit")
    p.add_argument("name")
    p.add_argument("--kind", choices=["executor", "cache_store", "artifact_store", "router"], default="executor")
    p.add_argument("--directory", default=".")
    p.set_defaults(func="plugins:cmd_plugin_new")
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
        code = int(_command(args.func)(args) or 0)
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


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    """The function a ``"module:function"`` of this package names."""
    import importlib

    module, _, function = name.partition(":")
    return getattr(importlib.import_module(f"flowyml_core.cli.{module}"), function)


def _json_error(args: argparse.Namespace, message: str) -> None:
    """With ``--json``, a failure is a JSON object on stdout too, so scripts never parse an empty output."""
    if getattr(args, "json", False):
        print(json.dumps({"error": message, "command": _command_name(args)}, sort_keys=True))


def _command_name(args: argparse.Namespace) -> str:
    parts = [args.command]
    for attr in ("stack_command", "cache_command", "plugin_command", "action"):
        value = getattr(args, attr, None)
        if isinstance(value, str):
            parts.append(value)
    return " ".join(parts)
