"""``flowyml show``: a pipeline as a Mermaid or DOT diagram, optionally coloured by one of its runs."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from flowyml_core.errors import FlowymlError

logger = logging.getLogger("flowyml.show")


def cmd_show(args: argparse.Namespace) -> int:
    from flowyml_core.diagram import render
    from flowyml_core.loader import load_pipeline

    pipeline = load_pipeline(args.target)
    pipeline.build()
    overlay = title = None
    if args.run:
        entry = _run_of(pipeline, args.run, args.target)
        overlay = _overlay(pipeline, entry)
        title = f"{pipeline.name} (run {entry.run_id})"
    text = render(pipeline, args.format, direction=args.direction, overlay=overlay, title=title)
    if args.output:
        from flowyml_core.stack_edit import atomic_write_text

        path = Path(args.output)
        if path.is_dir():
            raise FlowymlError(f"--output {args.output} is a directory; give a file name (e.g. pipeline.{_suffix(args)})")
        try:
            atomic_write_text(path, text)
        except OSError as exc:
            raise FlowymlError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        print(f"wrote {args.format} diagram of pipeline {pipeline.name!r} to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def _suffix(args: argparse.Namespace) -> str:
    return "mmd" if args.format == "mermaid" else "dot"


def _run_of(pipeline: Any, run_id: str, target: str) -> Any:
    """The history entry of ``run_id``, refused when it is a run of another pipeline."""
    from flowyml_core.history import find_run
    from flowyml_core.stacks import printable

    entry = find_run(run_id)
    if entry.pipeline != pipeline.name:
        raise FlowymlError(
            f"run {printable(entry.run_id)} is a run of pipeline {entry.pipeline!r}, but {target} is pipeline "
            f"{pipeline.name!r}; give a run of {pipeline.name!r} (flowyml runs list) or the file of {entry.pipeline!r}"
        )
    return entry


def _overlay(pipeline: Any, entry: Any) -> dict[str, Any]:
    from flowyml_core.diagram import StepState

    overlay = {name: StepState(step.status, step.duration) for name, step in entry.steps.items()}
    gone = sorted(set(overlay) - {s.name for s in pipeline.steps})
    if gone:
        # The pipeline changed since that run: say so, rather than draw a run that did not happen.
        logger.warning("run %s has steps that pipeline %r no longer has (not shown): %s",
                       entry.run_id, pipeline.name, ", ".join(map(repr, gone)))
    return overlay
