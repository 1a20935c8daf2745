"""``flowyml plugins`` and ``flowyml plugin new``."""

from __future__ import annotations

import argparse
from pathlib import Path

from flowyml_core.cli.common import out


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

    out(data, args.json, text)
    return 0


def cmd_plugin_new(args: argparse.Namespace) -> int:
    from flowyml_core.scaffold import new_plugin

    path = new_plugin(args.name, kind=args.kind, directory=Path(args.directory))
    print(f"created plugin package in {path}")
    print(f'next: pip install -e "{path}[test]" && flowyml plugins')
    return 0
