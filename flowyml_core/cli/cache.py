"""``flowyml cache prune``."""

from __future__ import annotations

import argparse
from typing import Any

from flowyml_core.cli.common import out
from flowyml_core.errors import FlowymlError


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
    secrets = stack.secrets
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

    out(data, args.json, text)
    return 0
