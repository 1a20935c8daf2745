"""``flowyml stack list|show|use|add|remove|validate``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from flowyml_core.cli.common import out, stack_registry
from flowyml_core.errors import FlowymlError


def cmd_stack_list(args: argparse.Namespace) -> int:
    registry = stack_registry()
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
        from flowyml_core.stacks import choice_hint, printable

        names = {r["name"]: printable(r["name"]) for r in rows}
        width = max(len(n) for n in names.values())
        lines = [
            f"{'*' if r['active'] else ' '} {names[r['name']]:<{width}}  {printable(r['executor']):<10} "
            f"{printable(r['origin'])}"
            for r in rows
        ]
        if active not in registry.stacks:
            lines.append(f"active stack {active!r} ({printable(why)}) is not defined; {choice_hint(why)}")
        else:
            lines.append(f"(* active: {printable(active)}, from {printable(why)})")
        return "\n".join(lines)

    out(data, args.json, text)
    return 0


def cmd_stack_show(args: argparse.Namespace) -> int:
    """Show a stack as written, with its problems; informational, so it exits 0 even when there are some.

    The problems are those ``stack validate`` reports about what is written
    (a flavor no plugin provides, unknown options, wrong types), worded the
    same; ``${env:…}`` values are not read here: ``stack validate`` resolves
    them and runs each component's validate(), and exits 1 on a problem.
    """
    from flowyml_core.config import mask_options
    from flowyml_core.errors import PluginError
    from flowyml_core.plugins import get_registry
    from flowyml_core.structuring import written_option_problems

    registry = stack_registry()
    name, why = registry.active(args.name)
    spec = registry.get(name, why)
    plugins = get_registry()
    components = {}
    for kind, comp in spec.components.items():
        where = f"{spec.origin}: stack {name!r}, {kind} {comp.flavor!r}"
        entry: dict[str, Any] = {"flavor": comp.flavor}
        try:
            flavor = plugins.flavor(kind, comp.flavor)
            entry["plugin"] = flavor.plugin
            config_cls = flavor.load()[1]
        except PluginError as exc:
            problems = [f"{where}: {exc}"]
            config_cls = None
        else:
            problems = written_option_problems(config_cls, comp.options, where)
        entry["options"] = mask_options(comp.options, config_cls)
        if problems:  # absent when there is none, as in the listing of a healthy stack before
            entry["problems"] = problems
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
            lines.extend(f"    PROBLEM: {printable(problem)}" for problem in entry.get("problems", ()))
        return "\n".join(lines)

    out(data, args.json, text)
    return 0


def cmd_stack_use(args: argparse.Namespace) -> int:
    from flowyml_core.stack_edit import use_stack
    from flowyml_core.stacks import printable

    path = use_stack(stack_registry(), args.name)
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
        # Name the stack and the file it was meant for, as errors about a written stack do.
        header = f"stack not added: nothing was written to {registry.project_file.path}"
        problems = [p if p.startswith("command line:") else f"stack {args.name!r}, {p}" for p in problems]
        raise FlowymlError(header + ("\n  " + "\n  ".join(problems) if len(problems) > 1 else "; " + problems[0]))
    created = not registry.project_file.exists
    shadowed = registry.stacks.get(args.name)
    path = add_stack(registry, args.name, components)
    note = " (new file)" if created else ""
    if shadowed is not None and shadowed.origin not in ("built-in", str(path)):
        note += f"; it overrides the stack of that name in {shadowed.origin}"
    print(f"added stack {printable(args.name)} to {path}{note}")
    return 0


def _check_flavors(spec: Any, problems: list[str]) -> None:
    """Structure each component's options as ``stack show`` does: no ``${env:…}`` reference is resolved."""
    from flowyml_core.errors import PluginError
    from flowyml_core.plugins import get_registry
    from flowyml_core.structuring import written_option_problems

    plugins = get_registry()
    for kind, comp in spec.components.items():
        where = f"{kind} {comp.flavor!r}"
        try:
            _, config_cls = plugins.flavor(kind, comp.flavor).load()
        except PluginError as exc:
            problems.append(f"{where}: {exc}")
            continue
        problems.extend(written_option_problems(config_cls, comp.options, where))


def cmd_stack_remove(args: argparse.Namespace) -> int:
    from flowyml_core.stack_edit import forget_active, remove_stack
    from flowyml_core.stacks import printable

    registry = stack_registry()
    path = remove_stack(registry, args.name)
    print(f"removed stack {printable(args.name)} from {path}")
    for warning in forget_active(registry, args.name):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def cmd_stack_validate(args: argparse.Namespace) -> int:
    registry = stack_registry()
    name, _ = registry.active(args.name)
    try:
        stack = registry.resolve(name)
    except FlowymlError as exc:
        if not args.json:
            raise
        # The same shape as a failed validate(): one entry per problem; and, like every error, its line on stderr.
        problems = list(getattr(exc, "problems", None) or [str(exc)])
        out({"name": name, "valid": False, "problems": problems, "error": str(exc)}, True, str)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    problems = stack.validate()
    if args.json:
        out({"name": name, "valid": not problems, "problems": problems}, True, str)
        return 1 if problems else 0
    if problems:
        raise FlowymlError(f"stack {name!r} failed validation:\n  " + "\n  ".join(problems))
    print(f"stack {name} is valid")
    return 0
