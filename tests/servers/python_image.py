"""A base image with Python and flowyml, made without pulling anything.

No Python image can be pulled on this machine, so the repository's ``docker``
stack runs on a base image assembled here from what this machine has:

* the busybox image (``FROM scratch`` + a static busybox: a shell for ``RUN``),
* this interpreter's prefix (``sys.base_prefix``: the binary, ``libpython``,
  the standard library without its tests), at the same path, since the binary
  finds ``libpython`` through an absolute RUNPATH,
* the shared libraries the interpreter and the copied extension modules load
  (what ``ldd`` says), at the same paths,
* flowyml-core, flowyml-local and everything they require, copied from this
  environment into the interpreter's own ``site-packages`` (editable installs
  included: their package directory and their metadata, entry points too),
* ``python``, ``python3`` and ``flowyml`` in ``/usr/local/bin``.

The image is a real one: the docker executor builds the project's image
``FROM`` it and runs ``flowyml step-runner`` in it, as it would from
``python:3.11-slim`` with ``requirements = ["flowyml-local"]`` on a machine
that can pull. ``scripts/docker_engine.py`` makes it for people; the
``python_base_image`` fixture for the tests.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from tests.servers.docker_engine import build_busybox_image

#: The tag the repository's ``docker`` stack names as its base image.
PYTHON_BASE_TAG = "flowyml-dev/python:latest"
#: What the image's flowyml must be able to do: run units on local stores.
DISTRIBUTIONS = ("flowyml-core", "flowyml-local")
STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages", "pydoc_data"}


def _requirements(name: str) -> list[str]:
    from packaging.requirements import Requirement

    found = []
    for text in importlib.metadata.distribution(name).requires or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            found.append(requirement.name)
    return found


def distribution_closure(names: tuple[str, ...] = DISTRIBUTIONS) -> list[importlib.metadata.Distribution]:
    """The distributions ``names`` need, this environment's versions of them."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen[name] = importlib.metadata.distribution(name)
        todo.extend(_requirements(name))
    return list(seen.values())


def _top_level(dist: importlib.metadata.Distribution) -> set[str]:
    names = set((dist.read_text("top_level.txt") or "").split())
    for path in dist.files or ():
        first = path.parts[0]
        if first.endswith((".dist-info", ".pth", ".data")) or first in ("..", "__pycache__") or first.startswith("__editable__"):
            continue
        names.add(first[:-3] if first.endswith(".py") else first.split(".")[0] if path.suffix == ".so" else first)
    names = {name for name in names if name.isidentifier() and name not in ("tests", "test")}
    return names or {dist.metadata["Name"].replace("-", "_").lower()}


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, symlinks=False, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("tests", "test"))
    else:
        shutil.copy2(source, target)


def copy_distributions(site: Path) -> None:
    """Each distribution's import packages and its metadata into ``site``."""
    for dist in distribution_closure():
        for name in sorted(_top_level(dist)):
            spec = importlib.util.find_spec(name)
            if spec is None:
                continue
            if spec.submodule_search_locations:
                location = Path(next(iter(spec.submodule_search_locations)))
                _copy(location, site / location.name)
            elif spec.origin and os.path.isfile(spec.origin):
                _copy(Path(spec.origin), site / Path(spec.origin).name)
        metadata = Path(str(dist._path))  # type: ignore[attr-defined]  # PathDistribution: its .dist-info
        _copy(metadata, site / metadata.name)


def _shared_libraries(binaries: list[Path]) -> set[str]:
    libraries: set[str] = set()
    for binary in binaries:
        done = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
        for line in done.stdout.splitlines():
            match = re.search(r"(/\S+)", line.split("=>")[-1])
            if match and os.path.exists(match.group(1)):
                libraries.add(match.group(1))
    return libraries


def make_rootfs(root: Path) -> None:
    """The interpreter, its libraries, flowyml and the commands, under ``root``."""
    prefix = Path(sys.base_prefix)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    stdlib = Path(sysconfig.get_paths(vars={"installed_base": str(prefix), "base": str(prefix)})["stdlib"])
    python = Path(os.path.realpath(sys._base_executable))  # type: ignore[attr-defined]
    _copy(python, root / python.relative_to("/"))
    for library in (prefix / "lib").glob("libpython*.so.*"):  # the versioned file; the others are links to it
        _copy(library, root / library.relative_to("/"))
    for item in stdlib.iterdir():
        if item.name not in STDLIB_SKIP and not item.name.startswith("config-"):
            _copy(item, root / item.relative_to("/"))
    site = root / stdlib.relative_to("/") / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    copy_distributions(site)
    for tk in (root / stdlib.relative_to("/") / "lib-dynload").glob("_tkinter*.so"):
        tk.unlink()  # no GUI in a container (and it would bring Tcl/Tk and X11)
    binaries = [python, *(root / stdlib.relative_to("/") / "lib-dynload").glob("*.so"), *site.rglob("*.so")]
    for library in _shared_libraries(binaries):
        if not library.startswith(str(prefix)):
            _copy(Path(os.path.realpath(library)), root / library.lstrip("/"))
    bin_dir = root / "usr" / "local" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3", version):
        (bin_dir / name).symlink_to(python)
    (bin_dir / "flowyml").write_text('#!/bin/sh\nexec /usr/local/bin/python3 -m flowyml_core.cli "$@"\n')
    (bin_dir / "flowyml").chmod(0o755)


def build_python_base_image(client, tag: str = PYTHON_BASE_TAG) -> str:
    """Build ``tag`` (busybox + this Python + flowyml) with ``client``; nothing is pulled."""
    base = build_busybox_image(client)
    with tempfile.TemporaryDirectory(prefix="fpy-") as tmp:
        context = Path(tmp)
        make_rootfs(context / "rootfs")
        (context / "Dockerfile").write_text(
            f"FROM {base}\n"
            "COPY rootfs/ /\n"
            "ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PYTHONDONTWRITEBYTECODE=1\n"
            'RUN ["/usr/local/bin/flowyml", "--version"]\n'
            'CMD ["/usr/local/bin/python3"]\n'
        )
        client.images.build(path=str(context), tag=tag, rm=True, forcerm=True, pull=False, network_mode="none")
    return tag
