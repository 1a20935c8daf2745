"""Changing ``stacks.toml`` without losing what a person wrote there.

tomli-w cannot keep comments, so the file is never re-rendered: a new stack is
appended as text (rendered by tomli-w), a removed stack's lines are cut out, and
the result is parsed again and compared with what was intended. When the
comparison fails (say the stack was written as an inline table) the edit is
refused with a message, and the file is left untouched. Writes are atomic.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from flowyml_core.errors import ConfigError
from flowyml_core.stacks import StackRegistry, stacks_file_variable, tomllib


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def render_stack(name: str, components: dict[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps({"stacks": {name: components}})


def add_stack(registry: StackRegistry, name: str, components: dict[str, Any]) -> Path:
    """Append ``[stacks.NAME]`` to the project file (created if missing).

    The project file is ``./stacks.toml`` or the one ``FLOWYML_STACKS_FILE``
    names. That file is created when missing (the person asked for a stack to
    be written there), but not its directory: a typo in a directory name
    should not leave a new directory tree behind.
    """
    if not name.strip():
        raise ConfigError("stack add needs a stack name (an empty or blank name could never be selected)")
    target = registry.project_file
    if not target.exists and not target.path.parent.is_dir():
        label = stacks_file_variable(registry.environ, target.path) or str(target.path)
        raise ConfigError(
            f"{label}: directory {target.path.parent.absolute()} does not exist; create it, fix the path, "
            "or unset FLOWYML_STACKS_FILE to use ./stacks.toml"
        )
    # A stack of the user's file may be overridden here: a stack named in both files is the project's.
    if name in registry.stacks and registry.stacks[name].origin == str(target.path):
        raise ConfigError(f"stack {name!r} already exists in {registry.stacks[name].origin}; remove it first")
    old_text = target.text if target.exists else ""
    old_data = target.data if target.exists else {}
    # One blank line before the new stack, always (even after blank lines already there): remove_stack
    # takes exactly that line back, so adding then removing leaves the file as it was, byte for byte.
    # An unfinished last line is ended first, and stays ended.
    separator = "" if not old_text else ("\n" if old_text.endswith("\n") else "\n\n")
    new_text = old_text + separator + render_stack(name, components)
    expected = dict(old_data)
    expected["stacks"] = {**old_data.get("stacks", {}), name: components}
    _verify_and_write(target.path, new_text, expected, f"add stack {name!r}")
    return target.path


_HEADER = re.compile(r"^\s*\[\[?\s*(?P<key>[^\]]+?)\s*\]\]?\s*(#.*)?$")


def _header_parts(key: str) -> list[str]:
    parts = []
    for match in re.finditer(r'\s*("(?:[^"\\]|\\.)*"|\'[^\']*\'|[A-Za-z0-9_-]+)\s*(\.|$)', key):
        token = match.group(1)
        parts.append(token[1:-1] if token[0] in "\"'" else token)
    return parts


def remove_stack(registry: StackRegistry, name: str) -> Path:
    """Cut ``[stacks.NAME]`` and its sub-tables out of the file that defines it.

    Also cut: the blank line right before the stack (before each part of it,
    when its sub-tables are written apart), if there is one. :func:`add_stack`
    puts it there, so adding and removing a stack, any number of times,
    leaves the file as it was (blank lines piled up before); a stack written
    by hand between two others leaves one blank line between them, not two.
    """
    spec = registry.get(name)
    if spec.origin == "built-in":
        raise ConfigError(f"stack {name!r} is built in; there is nothing to remove")
    stacks_file = next(f for f in registry.files if str(f.path) == spec.origin)
    if stacks_file.data.get("default") == name:
        raise ConfigError(f"stack {name!r} is the default in {stacks_file.path}; change 'default' first")
    # TOML lines end at "\n" only; str.splitlines() would also split inside strings at \x85, \u2028, \x0c...
    lines = stacks_file.text.split("\n")
    lines = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    keep: list[str] = []
    inside = False
    pending: list[str] = []  # comments/blank lines that may belong to the next header
    for line in lines:
        match = _HEADER.match(line)
        if match:
            parts = _header_parts(match.group("key"))
            starts = parts[:2] == ["stacks", name]
            if inside and not starts:
                keep.extend(pending)
            pending = []
            if starts and not inside and keep and keep[-1].strip() == "":
                keep.pop()
            inside = starts
            if inside:
                continue
        if inside:
            if line.strip() == "" or line.lstrip().startswith("#"):
                pending.append(line)
            else:
                pending = []
            continue
        keep.append(line)
    # Comments after the stack's last key are kept at the end of the file too,
    # as they are before a following header: they may not be the stack's.
    keep.extend(pending)
    new_text = "".join(keep)
    expected = dict(stacks_file.data)
    expected["stacks"] = {k: v for k, v in stacks_file.data.get("stacks", {}).items() if k != name}
    _verify_and_write(stacks_file.path, new_text, expected, f"remove stack {name!r}")
    return stacks_file.path


def _without_empty_stacks(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """Removing the last stack leaves no ``stacks`` table at all, which means the same."""
    if data is None or data.get("stacks") != {}:
        return data
    return {k: v for k, v in data.items() if k != "stacks"}


def _verify_and_write(path: Path, new_text: str, expected: dict[str, Any], action: str) -> None:
    try:
        got = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError:
        got = None
    if _without_empty_stacks(got) != _without_empty_stacks(expected):
        raise ConfigError(
            f"cannot {action} in {path} without rewriting parts of it (the stacks are not written as "
            f"[stacks.NAME] tables); edit the file by hand. The file was not changed."
        )
    atomic_write_text(path, new_text)


def forget_active(registry: StackRegistry, name: str) -> list[str]:
    """After ``name`` was removed: clear a ``flowyml stack use`` choice of it; say what is active now.

    Left in place, the choice made every later command fail with "unknown
    stack" until someone found ``.flowyml/active-stack``.
    """
    from flowyml_core.stacks import printable

    warnings = []
    if registry.saved_active() == name:
        registry.active_file.unlink(missing_ok=True)
        warnings.append(f"stack {name!r} was the active one (chosen with flowyml stack use); that choice is cleared")
    if registry.environ.get("FLOWYML_STACK") == name:
        warnings.append(f"FLOWYML_STACK still names the removed stack {name!r}; unset it or set it to another stack")
    if warnings:
        after = StackRegistry.load(registry.environ, registry.project_dir)
        now, why = after.active()
        if now != name:
            warnings.append(f"the active stack is now {printable(now)} ({why})")
    return warnings


def use_stack(registry: StackRegistry, name: str) -> Path:
    if not name:
        raise ConfigError("stack use needs a stack name (an empty name cannot be made active)")
    registry.get(name)
    atomic_write_text(registry.active_file, name + "\n")
    return registry.active_file


def parse_component_arg(kind: str, text: str) -> dict[str, Any] | str:
    """``FLAVOR[:k=v,...]`` → a component value for stacks.toml.

    Values are TOML literals when they parse as one (``n=2``, ``on=true``,
    ``ref="${env:X}"``), else plain strings.
    """
    flavor, _, rest = text.partition(":")
    flavor = flavor.strip()
    if not flavor:
        raise ConfigError(f"--{kind.replace('_', '-')} needs a flavor, e.g. --{kind.replace('_', '-')} local:path=/data")
    if not rest:
        return flavor
    options: dict[str, Any] = {"flavor": flavor}
    for item in _split_options(rest):
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(f"--{kind.replace('_', '-')}: option {item!r} is not key=value")
        options[key] = _literal(raw.strip())
    return options


def _split_options(text: str) -> list[str]:
    """Split on commas outside quotes and brackets."""
    items, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append("".join(current))
            current = []
            continue
        current.append(ch)
    if current:
        items.append("".join(current))
    return [i for i in items if i.strip()]


def _literal(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw

