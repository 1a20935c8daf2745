"""``flowyml plugin new NAME --kind KIND``: a plugin package that installs and passes the kit as generated.

The package is the smallest correct one: an attrs config, a component that
fulfils its contract, the ``flowyml.plugins`` entry point, the plugin module
declaring ``FLOWYML_API_VERSION``, a test module that adopts the conformance
kit, and a tiny pipeline to try the component on, so the walkthrough in
CONTRIBUTING.md works anywhere, not only inside the flowyml repository.

The files are ``string.Template`` files under ``flowyml_core/templates/plugin``
(package data, shipped in the wheel); a line ``#include NAME`` in a template
is replaced by the template file ``NAME`` beside it.
"""

from __future__ import annotations

import keyword
import re
import string
from importlib import resources
from pathlib import Path

from flowyml_core.errors import FlowymlError

KINDS = ("executor", "cache_store", "artifact_store", "router")
_NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")


def _names(name: str) -> dict[str, str]:
    raw = name.strip()
    base = re.sub(r"^flowyml[-_]", "", raw.lower())
    if not _NAME.match(base):
        raise FlowymlError(
            f"plugin name {name!r} must be lowercase letters and digits, optionally joined by '-' or '_' "
            "(e.g. 'myexec' or 'ray-cluster')"
        )
    package = "flowyml_" + base.replace("-", "_")
    if keyword.iskeyword(package):  # pragma: no cover - cannot happen with the prefix, kept for safety
        raise FlowymlError(f"plugin name {name!r} gives the package name {package!r}, a Python keyword")
    camel = "".join(part.capitalize() for part in re.split(r"[-_]", base))
    from flowyml_core.plugins import API_VERSION

    return {
        "flavor": base,
        "dist": f"flowyml-{base}",
        "package": package,
        "Camel": camel,
        "api_version": API_VERSION,
    }


def new_plugin(name: str, kind: str = "executor", directory: Path | str = ".") -> Path:
    """Write the package ``flowyml-NAME/`` under ``directory`` and return its path."""
    if kind not in KINDS:
        raise FlowymlError(f"unknown plugin kind {kind!r} (choose one of: {', '.join(KINDS)})")
    names = _names(name)
    root = Path(directory).expanduser().resolve() / names["dist"]
    if root.exists() and any(root.iterdir()):
        raise FlowymlError(f"{root} already exists and is not empty; remove it or pass another --directory")
    files = {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        f"{names['package']}/__init__.py": "__init__.py.tmpl",
        f"{names['package']}/plugin.py": "plugin.py.tmpl",
        f"{names['package']}/{kind}.py": f"components/{kind}.py.tmpl",
        "tests/test_conformance.py": f"tests/test_{kind}.py.tmpl",
        "examples/tiny_pipeline.py": "examples/tiny_pipeline.py.tmpl",
    }
    hook = {"executor": "register_executors", "cache_store": "register_cache_stores",
            "artifact_store": "register_artifact_stores", "router": "register_routers"}[kind]
    cls = names["Camel"] + {"executor": "Executor", "cache_store": "CacheStore",
                            "artifact_store": "ArtifactStore", "router": "Router"}[kind]
    values = {**names, "kind": kind, "kind_words": kind.replace("_", " "), "hook": hook, "Class": cls,
              "stack_toml": stack_toml(f"try-{names['flavor']}", kind, names["flavor"])}
    try:
        for relative, template in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(string.Template(read_template(template)).substitute(values), encoding="utf-8")
    except OSError as exc:
        raise FlowymlError(f"cannot write the plugin package to {root}: {exc.strerror or exc}") from exc
    return root


def read_template(name: str) -> str:
    """A template file's text, with its ``#include NAME`` lines replaced by those templates."""
    base = resources.files("flowyml_core").joinpath("templates", "plugin")
    folder = name.rpartition("/")[0]
    text = base.joinpath(name).read_text(encoding="utf-8")
    return _INCLUDE.sub(lambda m: read_template(f"{folder}/{m.group(1)}" if folder else m.group(1)), text)


_INCLUDE = re.compile(r"^#include (\S+)\n", re.MULTILINE)

#: The stores every generated stack uses unless the plugin provides that kind itself.
_LOCAL_STACK = {
    "executor": '"local"',
    "artifact_store": '{ flavor = "local", path = ".flowyml/artifacts" }',
    "cache_store": '{ flavor = "local", path = ".flowyml/cache" }',
}


def stack_toml(stack: str, kind: str, flavor: str) -> str:
    """A ``[stacks.NAME]`` table that tries ``flavor`` as its ``kind``, the rest local: each key once."""
    components = dict(_LOCAL_STACK)
    components[kind] = f'{{ flavor = "{flavor}" }}' if kind != "executor" else f'{{ flavor = "{flavor}", log_steps = true }}'
    return "\n".join([f"[stacks.{stack}]", *(f"{key} = {value}" for key, value in components.items())])
