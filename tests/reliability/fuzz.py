"""Hypothesis-generated ``stacks.toml`` files and ``flowyml`` command lines.

Each example is a project directory (``stacks.toml`` and sometimes a user-level
file), an environment (``FLOWYML_STACK`` sometimes set) and one command line.
The command runs through ``flowyml_core.cli.main`` in-process (fast) or through
the real console script. Whatever the input:

* nothing escapes ``main`` and the catch-all "unexpected" error never shows
  (that would be a bug, not a message);
* exit code 0, 1 (``error:`` first line, one indented line per further problem,
  no traceback) or 2 (argparse usage);
* a command that fails changes no file; a command that succeeds changes only
  what it should (``use`` → the active-stack file, ``add``/``remove`` → the
  stacks file, and without losing what was written there).

Documents are built from a model, with problems injected on purpose and
recorded; for those the error must name the file, the stack and the field, and
every problem of the file is reported at once. Some documents are mangled as
text afterwards (truncated, bytes inserted, not UTF-8): then only the generic
rules apply, plus "a syntax error says where (file, line)".
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.kit import (
    PIPELINE_SOURCE,
    CliResult,
    changed,
    cli_problems,
    environ,
    install_rl_plugin,
    plugin_path,
    run_console,
    run_inprocess,
)

KINDS = ("executor", "artifact_store", "cache_store", "router")


@functools.lru_cache(maxsize=None)
def ints(low: int, high: int) -> st.SearchStrategy[int]:
    """st.integers, built once per range (building strategies in every draw cost a third of the run)."""
    return st.integers(low, high)
SET_VAR = "RL_FUZZ_SET"
SET_VALUE = "set-value"
SAFE_NAME = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
NAMES = st.one_of(
    SAFE_NAME,
    st.sampled_from(["local", "dev", "prod", "gcp-dev", "a.b", "x y", "ünï", "'q'", '"dq"', "-dash", "", " pad "]),
    ANY_TEXT,
)
PLAIN_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="$"), max_size=16).filter(
    lambda s: s not in ("invalid", "missing", "echo-token")
)
#: Values that some option of the rl flavors must refuse (each with the field it targets).
BAD_VALUES = [
    ("workers", "abc"), ("workers", [1, 2]), ("workers", {"a": 1}), ("workers", 1.5), ("workers", True),
    ("retries", "x"), ("tags", 5), ("tags", "not-a-list"), ("verbose", "maybe"), ("verbose", 3),
    ("label", 7), ("label", ["a"]), ("label", {"k": "v"}), ("path", 12), ("path", ["p"]), ("path", {"t": 1}),
]
RUN_TARGETS = [
    "", ":", "x", "pipeline.py", "pipeline.py:", ":pipeline", "pipeline.py:missing", "pipeline.py:not_a_pipeline",
    "missing.py:p", "broken.py:p", "syntax.py:p", "rlnomod_x:p", "rlnomod.sub:p", "os:path", "json:dumps",
    "json:JSONDecoder", "a:b:c", "pipeline.py:pipeline", "pipeline.py:failing", "dir.py:p", "pipeline.py:make",
]
PARAMS = st.one_of(
    st.sampled_from(["n=3", "n=0", "n=-2", "n=abc", "n=1.5", "n=[1,", "n=true", "novalue", "=1", "n=", "x=1", " n = 2 "]),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["n", "x", "k"]), ANY_TEXT),
    ANY_TEXT,
)


@attrs.define
class Problem:
    """An injected problem and the words its error must contain."""

    phase: str  # "load": any stack command reports it; "resolve": validate of that stack does;
    # "validate": the component's validate() does, once the stack resolves
    tokens: list[str]
    stack: str | None = None


@attrs.define
class Doc:
    text: bytes | None  # None: no file
    data: dict[str, Any] | None = None  # the model (None when mangled or random)
    problems: list[Problem] = attrs.Factory(list)
    modelled: bool = True
    rl_only: dict[str, bool] = attrs.Factory(dict)  # stack → only rl-* flavors (resolve outcome predictable)


def _render(data: dict[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps(data)


@st.composite
def components(draw, kind: str, name: str, problems: list[Problem], path: str, faults: bool = True) -> tuple[Any, bool]:
    """One component value; returns (value, uses only rl flavors)."""
    loc = [path, repr(name), kind]
    choice = draw(ints(0 if faults else 3, 39))
    if choice == 0:  # wrong type for a component
        value = draw(st.sampled_from([3, True, [1], 1.5]))
        problems.append(Problem("load", loc, name))
        return value, False
    if choice == 1:  # table without a usable flavor
        value = draw(st.sampled_from([{}, {"flavor": ""}, {"flavor": 3}, {"path": "x"}]))
        problems.append(Problem("load", loc, name))
        return value, False
    if choice == 2:
        problems.append(Problem("load", loc, name))
        return "", False
    if choice in (3, 4):  # an unknown flavor: a problem only when the stack is resolved
        # never the name of a flavor some plugin of this repository provides (vertex, gcs, dask, ...)
        flavor = draw(st.one_of(st.just("nosuch"), SAFE_NAME.map(lambda s: "zz" + s)))
        problems.append(Problem("resolve", [repr(name), kind, repr(flavor), "install"], name))
        return draw(st.sampled_from([flavor, {"flavor": flavor}])), True
    if choice in (5, 6, 7):
        flavor = {"executor": "local", "artifact_store": "local", "cache_store": "local", "router": "type"}[kind]
        if kind in ("artifact_store", "cache_store"):
            return {"flavor": flavor, "path": draw(st.sampled_from([".flowyml/a", "out", ".flowyml/c"]))}, False
        return flavor, False
    # rl flavors with options, some of them wrong
    if kind == "router":
        if draw(ints(0, 5)) == 0:
            problems.append(Problem("resolve", [repr(name), kind, "zzopt"], name))
            return {"flavor": "rl-router", "zzopt": 1}, True
        return draw(st.sampled_from(["rl-router", {"flavor": "rl-router"}])), True
    if kind == "cache_store":
        value = draw(st.sampled_from(["rl-cache", {"flavor": "rl-cache"}, {"flavor": "rl-cache", "size": 5}]))
        if draw(ints(0, 5)) == 0:
            bad = draw(st.sampled_from(["x", 1.5, [1], False]))
            problems.append(Problem("resolve", [repr(name), kind, "'size'"], name))
            return {"flavor": "rl-cache", "size": bad}, True
        return value, True
    flavor = "rl-exec" if kind == "executor" else "rl-mem"
    options: dict[str, Any] = {}
    if kind == "executor":
        if draw(st.booleans()):
            options["workers"] = draw(ints(-(2**63), 2**63 - 1))
        if draw(st.booleans()):
            options["label"] = draw(st.one_of(PLAIN_TEXT, st.just("${env:%s}" % SET_VAR)))
        if draw(st.booleans()):
            options["verbose"] = draw(st.booleans())
        if draw(st.booleans()):
            options["tags"] = draw(st.lists(PLAIN_TEXT, max_size=3))
    else:
        options["path"] = draw(st.one_of(PLAIN_TEXT, st.just("${env:%s}" % SET_VAR)))
        if draw(st.booleans()):
            options["retries"] = draw(ints(0, 10))
    # Each injected problem owns its field, so that no injection hides another.
    injected: set[str] = set()
    if draw(ints(0, 3)) == 0:
        key, value = draw(st.sampled_from([b for b in BAD_VALUES if (b[0] in ("path", "retries")) == (kind != "executor")]))
        options[key] = value
        injected.add(key)
        problems.append(Problem("resolve", [repr(name), kind, repr(key)], name))
    if draw(ints(0, 5)) == 0:
        key = draw(st.one_of(SAFE_NAME, ANY_TEXT).filter(lambda k: k not in ("flavor", "workers", "label", "verbose", "tags", "token", "path", "retries")))
        options[key] = draw(st.sampled_from([1, "v", True]))
        problems.append(Problem("resolve", [repr(name), kind, repr(key)], name))
    field = "label" if kind == "executor" else "path"
    if field not in injected and draw(ints(0, 6)) == 0:
        var = draw(st.from_regex(r"RL_MISSING_[A-Z]{1,6}", fullmatch=True))
        options[field] = "${env:%s}" % var
        injected.add(field)
        problems.append(Problem("resolve", [repr(name), var], name))
    if field not in injected and draw(ints(0, 8)) == 0:
        options[field] = "invalid" if kind == "executor" else "missing"
        injected.add(field)
        # validate() runs on components that could be built: reported once the others are fixed
        problems.append(Problem("validate", [repr(name), kind], name))
    if kind == "artifact_store" and "path" not in options:
        problems.append(Problem("resolve", [repr(name), kind, "'path'"], name))
    if not options and draw(st.booleans()):
        return flavor, True
    return {"flavor": flavor, **options}, True


@st.composite
def stack_bodies(draw, name: str, problems: list[Problem], path: str, faults: bool = True) -> tuple[Any, bool]:
    if (faults and draw(ints(0, 9)) == 0):
        problems.append(Problem("load", [path, repr(name)], name))
        return draw(st.sampled_from(["local", 3, [1, 2]])), False
    body: dict[str, Any] = {}
    rl_only = True
    for kind in KINDS:
        if kind == "executor" and (faults and draw(ints(0, 9)) == 0):
            problems.append(Problem("load", [path, repr(name), "executor"], name))
            continue
        if kind != "executor" and not draw(st.booleans()):
            continue
        value, rl = draw(components(kind, name, problems, path, faults))
        body[kind] = value
        rl_only = rl_only and rl
    if draw(ints(0, 4)) == 0:
        body["description"] = draw(PLAIN_TEXT)
    if (faults and draw(ints(0, 9)) == 0):
        body["description"] = 5
        problems.append(Problem("load", [path, repr(name), "description"], name))
    if (faults and draw(ints(0, 9)) == 0):
        key = draw(st.one_of(SAFE_NAME, ANY_TEXT).filter(lambda k: k not in (*KINDS, "description")))
        body[key] = "x"
        problems.append(Problem("load", [path, repr(name), repr(key)], name))
    return body, rl_only


@st.composite
def documents(draw, path: str, allow_absent: bool = True, focus: bool = False) -> Doc:
    """A stacks.toml: modelled (problems recorded), absent, mangled text, random text or bytes.

    ``focus``: a modelled document with no file-level problem and at least one
    stack, so that resolving its stacks (``stack validate``) is what is tested.
    """
    mode = "model" if focus else draw(st.sampled_from(["model"] * 12 + ["absent", "mangled", "mangled", "random", "bytes"]))
    if mode == "absent" and allow_absent:
        return Doc(None, {}, modelled=True)
    if mode == "random":
        text = draw(st.text(st.characters(blacklist_categories=("Cs",)), max_size=200))
        return Doc(text.encode("utf-8"), modelled=False)
    if mode == "bytes":
        return Doc(draw(st.binary(max_size=100)), modelled=False)
    problems: list[Problem] = []
    faults = False if focus else draw(st.booleans())  # half the documents have no file-level problem at all
    data: dict[str, Any] = {}
    rl_only: dict[str, bool] = {}
    names = draw(st.lists(NAMES, min_size=0 if not focus and draw(ints(0, 9)) == 0 else 1, max_size=4, unique=True))
    stacks: dict[str, Any] = {}
    for name in names:
        stacks[name], rl_only[name] = draw(stack_bodies(name, problems, path, faults))
    if faults and draw(ints(0, 19)) == 0:
        data["stacks"] = draw(st.sampled_from([3, "x", [1]]))
        problems = [Problem("load", [path, "stacks"])]
        rl_only = {}
        stacks = {}
    elif stacks or draw(st.booleans()):
        data["stacks"] = stacks
    default_choice = draw(ints(0, 19))
    if default_choice == 0 and faults:
        data["default"] = draw(st.sampled_from([3, ["a"], True]))
        problems.append(Problem("load", [path, "default"]))
    elif default_choice in (1, 2):
        default = draw(NAMES)
        data["default"] = default
        if default not in stacks and default != "local" and not problems:
            problems.append(Problem("load_default", [path, repr(default)]))
    elif default_choice == 3 and stacks:
        data["default"] = draw(st.sampled_from(sorted(stacks)))
    if (faults and draw(ints(0, 9)) == 0):
        key = draw(st.one_of(SAFE_NAME, ANY_TEXT).filter(lambda k: k not in ("default", "stacks")))
        data[key] = 1
        problems.append(Problem("load", [path, repr(key)]))
    text = _render(data)
    if draw(st.booleans()):
        text = "# a comment someone wrote\n" + text + "\n# trailing note\n"
    if mode == "mangled" and text:
        position = draw(ints(0, len(text)))
        action = draw(st.sampled_from(["truncate", "insert", "delete"]))
        if action == "truncate":
            text = text[:position]
        elif action == "insert":
            text = text[:position] + draw(st.sampled_from(["[", "]", "=", '"', "\n[", "{", "\x00", "\\", "é", "[stacks]\n"])) + text[position:]
        else:
            text = text[:position] + text[position + draw(ints(1, 5)):]
        return Doc(text.encode("utf-8"), modelled=False)
    return Doc(text.encode("utf-8"), data, problems, True, rl_only)


@st.composite
def component_args(draw) -> str:
    return draw(st.one_of(
        st.sampled_from([
            "rl-exec", "rl-exec:workers=2", "rl-exec:workers=abc", "rl-exec:label=hello,verbose=true",
            "rl-exec:token=\"${env:RL_FUZZ_SET}\"", "rl-exec:tags=[\"a\",\"b\"]", "rl-exec:=1", "rl-exec:k",
            "rl-exec:zz=1", "nosuch", "", ":", "rl-mem:path=p", "rl-mem", "rl-mem:path=[1,", "local", "rl-exec:workers=1.5",
        ]),
        ANY_TEXT,
    ))


@st.composite
def commands(draw, names: list[str]) -> list[str]:
    name = draw(st.sampled_from(names) if draw(ints(0, 3)) else NAMES)
    kind = draw(st.sampled_from(["list", "show", "show", "use", "validate", "validate", "validate", "validate", "remove",
                                 "add", "add", "plugins", "run", "run", "argv"]))
    json_flag = ["--json"] if draw(st.booleans()) else []
    if kind == "list":
        return ["stack", "list", *json_flag]
    if kind == "plugins":
        return ["plugins", *json_flag]
    if kind in ("show", "validate"):
        named = [name] if draw(ints(0, 4)) else []
        return ["stack", kind, *named, *json_flag]
    if kind in ("use", "remove"):
        return ["stack", kind, name]
    if kind == "add":
        argv = ["stack", "add", name, "--executor", draw(component_args())]
        if draw(st.booleans()):
            argv += ["--artifact-store", draw(component_args())]
        if draw(ints(0, 3)) == 0:
            argv += ["--cache-store", draw(component_args())]
        return argv
    if kind == "run":
        target = draw(st.one_of(st.sampled_from(RUN_TARGETS), ANY_TEXT.map(lambda t: "rlnomod_" + t)))
        argv = ["run", target]
        for param in draw(st.lists(PARAMS, max_size=3)):
            argv += ["--param", param]
        if draw(st.booleans()):
            argv += ["--stack", name]
        return argv
    return draw(st.lists(st.one_of(st.sampled_from(["stack", "list", "--json", "-x", "--stack", "run", "runs", "plugins", "--debug", "status"]), ANY_TEXT), max_size=5)).copy() or ["--bogus"]


@attrs.define
class Example:
    project: Doc
    user: Doc
    env_stack: str | None
    argv: list[str]


@st.composite
def examples(draw, project_path: str, user_path: str) -> Example:
    if draw(ints(0, 3)) == 0:  # focused: resolve a stack of a well-formed file
        project = draw(documents(project_path, focus=True))
        name = draw(st.sampled_from(sorted(project.data["stacks"])))
        json_flag = ["--json"] if draw(st.booleans()) else []
        return Example(project, Doc(None, {}), None, ["stack", "validate", name, *json_flag])
    project = draw(documents(project_path))
    user = draw(documents(user_path)) if draw(ints(0, 3)) == 0 else Doc(None, {})
    names = ["local"]
    for doc in (project, user):
        if doc.data and isinstance(doc.data.get("stacks"), dict):
            names += list(doc.data["stacks"])
    env_stack = draw(st.one_of(st.none(), st.sampled_from(names), NAMES)) if draw(ints(0, 5)) == 0 else None
    if env_stack is not None:
        env_stack = env_stack.replace("\0", "") or None  # the OS cannot hold NUL in a variable
    return Example(project, user, env_stack, draw(commands(names)))


# -- checking one example -------------------------------------------------------------------------
@attrs.define
class Workspace:
    """A project dir and a config dir, wiped between examples (sys.path and imports stay small)."""

    root: Path
    last_code: int | None = None
    fixed: set[str] = attrs.Factory(set)
    oracles: dict[str, int] = attrs.Factory(dict)  # how often each model oracle applied

    def count(self, oracle: str) -> None:
        self.oracles[oracle] = self.oracles.get(oracle, 0) + 1

    @property
    def project(self) -> Path:
        return self.root / "project"

    @property
    def xdg(self) -> Path:
        return self.root / "xdg"

    @property
    def project_file(self) -> Path:
        return self.project / "stacks.toml"

    @property
    def user_file(self) -> Path:
        return self.xdg / "flowyml" / "stacks.toml"

    @property
    def active_file(self) -> Path:
        return self.project / ".flowyml" / "active-stack"

    def reset(self, example: Example) -> None:
        """Back to the fixed project files, then write the example's stacks files.

        Only what an example can create is removed (cheaper than rebuilding the tree).
        """
        if not (self.project / "pipeline.py").exists():
            self.project.mkdir(parents=True, exist_ok=True)
            (self.project / "pipeline.py").write_text(PIPELINE_SOURCE, encoding="utf-8")
            (self.project / "broken.py").write_text("raise RuntimeError('module raises on import')\n", encoding="utf-8")
            (self.project / "syntax.py").write_text("def broken(:\n", encoding="utf-8")
            (self.project / "dir.py").mkdir()
            self.fixed = {p.name for p in self.project.iterdir()} | {"__pycache__"}
        # The last in-process run's history entry is written on the history's thread; let it land
        # before its directory is removed (else rmtree and the writer race over .flowyml/runs/).
        from flowyml_core.history import flush

        flush()
        for path in self.project.iterdir():
            if path.name not in self.fixed:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        if self.xdg.exists():
            shutil.rmtree(self.xdg)
        (self.xdg / "flowyml").mkdir(parents=True)
        if example.project.text is not None:
            self.project_file.write_bytes(example.project.text)
        if example.user.text is not None:
            self.user_file.write_bytes(example.user.text)

    def snapshot(self) -> dict[str, str]:
        import hashlib

        digests = {}
        for base in (self.project, self.xdg):
            for dirpath, dirs, files in os.walk(base):
                dirs[:] = [d for d in dirs if d != "__pycache__"]
                for name in files:
                    path = Path(dirpath) / name
                    digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        return digests


def _parse(path: Path) -> dict[str, Any] | None:
    import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None


def check_example(ws: Workspace, ex: Example, runner: str = "inprocess") -> list[str]:
    """Run one example; return the rules it broke (empty = fine)."""
    ws.reset(ex)
    before = ws.snapshot()
    before_project = ws.project_file.read_bytes() if ws.project_file.exists() else None
    env = {"XDG_CONFIG_HOME": str(ws.xdg), "FLOWYML_STACK": ex.env_stack, SET_VAR: SET_VALUE,
           "FLOWYML_STACKS_FILE": None, "FLOWYML_DISABLE_PLUGINS": None}
    with environ(env):
        if runner == "inprocess":
            result = run_inprocess(ex.argv, cwd=ws.project)
        else:
            # The OS cannot pass NUL in an argument: the console runs get the argument without it.
            ex.argv = [a.replace("\0", "") for a in ex.argv]
            result = run_console(ex.argv, cwd=ws.project, env=dict(os.environ))
    after = ws.snapshot()
    ws.last_code = result.code
    problems = cli_problems(result)
    problems += _check_files(ws, ex, result, before, after, before_project)
    problems += _check_messages(ws, ex, result)
    return problems


def _check_files(ws: Workspace, ex: Example, result: CliResult, before: dict, after: dict, before_project: bytes | None) -> list[str]:
    diff = changed(before, after)
    command = ex.argv[:2]
    allowed: set[str] = set()
    if result.code == 0 and command == ["stack", "use"]:
        allowed = {str(ws.active_file)}
    elif result.code == 0 and command == ["stack", "add"]:
        allowed = {str(ws.project_file)}
    elif result.code == 0 and command == ["stack", "remove"]:
        allowed = {str(ws.project_file), str(ws.user_file)}
    elif ex.argv[:1] == ["run"]:
        # a run (even a failed one) may write outputs and cache under .flowyml/
        allowed = {p for p in diff if p.startswith(str(ws.project / ".flowyml")) and p != str(ws.active_file)}
    problems = [f"file modified by {'a failing' if result.code else 'this'} command: {p}" for p in diff if p not in allowed]
    if result.code == 0 and command == ["stack", "add"]:
        new = ws.project_file.read_bytes()
        if before_project is not None and not new.startswith(before_project):
            problems.append("stack add rewrote what was in stacks.toml instead of appending")
        data = _parse(ws.project_file)
        old = _parse_bytes(before_project) if before_project is not None else {}
        if data is None or old is None:
            problems.append("stack add left a stacks.toml that does not parse")
        elif {k: v for k, v in data.get("stacks", {}).items() if k != ex.argv[2]} != old.get("stacks", {}) or \
                {k: v for k, v in data.items() if k != "stacks"} != {k: v for k, v in old.items() if k != "stacks"}:
            problems.append("stack add changed other content of stacks.toml")
        elif ex.argv[2] not in data.get("stacks", {}):
            problems.append("stack add reported success but the stack is not in the file")
    if result.code == 0 and command == ["stack", "remove"]:
        for path in (ws.project_file, ws.user_file):
            if str(path) in diff:
                data = _parse(path)
                if data is None or ex.argv[2] in data.get("stacks", {}):
                    problems.append(f"stack remove left {path} unparsable or still holding the stack")
    if result.code == 0 and command == ["stack", "use"] and not ex.env_stack:
        with environ({"XDG_CONFIG_HOME": str(ws.xdg), "FLOWYML_STACK": None}):
            listing = run_inprocess(["stack", "list", "--json"], cwd=ws.project)
        active = json.loads(listing.out)["active"] if listing.code == 0 else None
        if active != ex.argv[2]:
            saved = ws.active_file.read_text(encoding="utf-8") if ws.active_file.exists() else ""
            problems.append(f"stack use {ex.argv[2]!r} saved {saved!r}, but the active stack is then {active!r}")
    return problems


def _parse_bytes(data: bytes) -> dict[str, Any] | None:
    import tomllib

    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None


def _json_text(out: str) -> str:
    """The strings inside JSON output, as themselves (not JSON-escaped), one per line."""
    try:
        data = json.loads(out)
    except ValueError:
        return out
    strings: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            strings.append(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                strings.append(str(key))
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data)
    return "\n".join(strings)


STACK_COMMANDS = {"list", "show", "use", "validate", "remove"}


def _extra_positionals(argv: list[str]) -> bool:
    """Whether ``stack CMD ...`` has more positional arguments than CMD takes (list: none; the others: one)."""
    positionals = [a for a in argv[2:] if not a.startswith("-")]
    return len(positionals) > (0 if argv[1] == "list" else 1)


def _check_messages(ws: Workspace, ex: Example, result: CliResult) -> list[str]:
    """Oracles from the model: injected problems are named; clean inputs succeed."""
    problems: list[str] = []
    argv = ex.argv
    is_stack_cmd = argv[:1] == ["stack"] and len(argv) > 1 and argv[1] in STACK_COMMANDS
    docs = [(ex.project, ws.project_file), (ex.user, ws.user_file)]
    if result.code == 2 and any(a.startswith("-") and a != "--json" for a in argv[2:]):
        return problems  # a name that argparse takes for an option: a usage error, rightly
    if result.code == 2 and is_stack_cmd and _extra_positionals(argv):
        return problems  # e.g. "stack list run" (from the random argv): a usage error, before any file is read
    # Text that is not valid TOML: the error says which file and where (the project's is read first).
    for doc, path in docs:
        if doc.text is None or not is_stack_cmd:
            continue
        import tomllib

        try:
            tomllib.loads(doc.text.decode("utf-8"))
        except UnicodeDecodeError:
            if result.code != 1 or str(path) not in result.err:
                problems.append(f"non-UTF-8 {path.name} not reported with its path: {result.err[:200]!r}")
            return problems
        except tomllib.TOMLDecodeError:
            ws.count("TOML syntax error located")
            if result.code != 1 or str(path) not in result.err or "line" not in result.err:
                problems.append(f"TOML syntax error in {path} not reported with file and line: {result.err[:200]!r}")
            return problems
    if not (ex.project.modelled and ex.user.modelled) or not is_stack_cmd:
        return problems
    load = [p for d, _ in docs for p in d.problems if p.phase == "load"]
    if load:
        ws.count("file problems named")
        if result.code != 1:
            problems.append(f"{len(load)} problem(s) in stacks.toml but exit {result.code}")
        for p in load:
            missing = [t for t in p.tokens if t not in result.err]
            if missing:
                problems.append(f"error does not name {missing} (problem {p.tokens}): {result.err[:400]!r}")
        return problems
    known_names = {"local"} | {n for d, _ in docs for n in ((d.data or {}).get("stacks") or {})}
    effective = None
    for doc, path in reversed(docs):  # the user's file first; the project's default wins
        default = (doc.data or {}).get("default")
        if isinstance(default, str):
            effective = (default, path)
    if effective is not None and effective[0] not in known_names:
        if result.code != 1 or str(effective[1]) not in result.err or repr(effective[0]) not in result.err:
            problems.append(f"default {effective[0]!r} naming no stack not reported: exit {result.code} {result.err[:300]!r}")
        return problems
    # A clean configuration: what each command must do.
    stacks = {}
    for doc, path in reversed(docs):
        stacks.update((doc.data or {}).get("stacks", {}) or {})
    known = set(stacks) | {"local"}
    explicit = argv[2] if len(argv) > 2 and not argv[2].startswith("--") else None
    if explicit == "" and argv[1] in ("show", "validate"):
        explicit = None  # an empty NAME means "the active stack", like no NAME
    if argv[1] == "list":
        if result.code != 0:
            problems.append(f"stack list failed on a valid configuration: {result.err[:300]!r}")
        elif "--json" in argv:
            listed = {row["name"] for row in json.loads(result.out)["stacks"]}
            if listed != known:
                problems.append(f"stack list --json shows {sorted(listed)}, expected {sorted(known)}")
    if argv[1] in ("show", "use", "validate", "remove") and explicit is not None and explicit not in known:
        if result.code != 1 or (explicit and repr(explicit) not in result.err):
            problems.append(f"unknown stack {explicit!r} not reported by name: exit {result.code} {result.err[:300]!r}")
    if argv[1] == "show" and explicit in known and result.code != 0:
        problems.append(f"stack show {explicit!r} failed on a valid configuration: {result.err[:300]!r}")
    if argv[1] == "use" and explicit and explicit in known and result.code != 0:
        problems.append(f"stack use {explicit!r} failed on a valid configuration: {result.err[:300]!r}")
    origin = ex.project if explicit in ((ex.project.data or {}).get("stacks") or {}) else ex.user
    if argv[1] == "validate" and explicit in stacks and origin.rl_only.get(explicit, False):
        expected = [p for p in origin.problems if p.phase == "resolve" and p.stack == explicit]
        if not expected:
            expected = [p for p in origin.problems if p.phase == "validate" and p.stack == explicit]
        ws.count("validate: stack with injected problems" if expected else "validate: valid stack")
        if expected:
            if result.code != 1:
                problems.append(f"stack {explicit!r} has {len(expected)} problem(s) {[p.tokens for p in expected]} but validate exited {result.code}")
            text = result.err + _json_text(result.out)
            for p in expected:
                missing = [t for t in p.tokens if t not in text]
                if missing:
                    problems.append(f"validate error does not name {missing} (problem {p.tokens}): {result.err[:500]!r}")
        elif result.code != 0:
            problems.append(f"validate of a valid stack {explicit!r} failed: {result.err[:300]!r}")
    if argv[1] == "remove" and explicit in ((ex.project.data or {}).get("stacks") or {}) and \
            (ex.project.data or {}).get("default") != explicit and result.code != 0:
        import re

        if re.fullmatch(r"[A-Za-z0-9_-]+", explicit):
            problems.append(f"stack remove {explicit!r} refused for a plainly written stack: {result.err[:300]!r}")
    return problems


# -- measurement ------------------------------------------------------------------------------------
@attrs.define
class FuzzReport:
    examples: int = 0
    console_examples: int = 0
    by_command: dict[str, int] = attrs.Factory(dict)
    by_exit: dict[str, int] = attrs.Factory(dict)
    failures: list[dict[str, Any]] = attrs.Factory(list)
    seconds: float = 0.0
    oracles: dict[str, int] = attrs.Factory(dict)

    @property
    def violations(self) -> int:
        return len(self.failures)


def fuzz_cli(
    examples_count: int,
    workdir: Path,
    plugin_root: Path,
    console_examples: int = 0,
    derandomize: bool = True,
    fail_fast: bool = False,
) -> FuzzReport:
    """Run ``examples_count`` generated examples in-process and ``console_examples`` through the console script.

    With ``fail_fast`` a broken rule raises AssertionError inside the test so
    hypothesis shrinks it to a minimal example; otherwise every violation is
    recorded with its input and the run goes on (for the report).
    """
    install_rl_plugin(plugin_root)
    report = FuzzReport()
    ws = Workspace(workdir)
    project_path, user_path = str(ws.project_file), str(ws.user_file)
    started = time.perf_counter()

    def make_test(runner: str, count: int):
        @settings(max_examples=count, deadline=None, database=None, derandomize=derandomize,
                  suppress_health_check=list(HealthCheck), print_blob=False)
        @given(examples(project_path, user_path))
        def test(ex: Example) -> None:
            problems = check_example(ws, ex, runner)
            key = " ".join(ex.argv[:2]) if ex.argv[:1] == ["stack"] else (ex.argv[0] if ex.argv else "")
            key = key if key in ("stack list", "stack show", "stack use", "stack add", "stack remove", "stack validate", "plugins", "run") else "other argv"
            report.by_command[key] = report.by_command.get(key, 0) + 1
            code = str(ws.last_code)
            report.by_exit[code] = report.by_exit.get(code, 0) + 1
            if runner == "inprocess":
                report.examples += 1
            else:
                report.console_examples += 1
            if problems:
                failure = {
                    "argv": ex.argv, "problems": problems, "runner": runner, "env_stack": ex.env_stack,
                    "project": ex.project.text.decode("utf-8", "replace") if ex.project.text is not None else None,
                    "user": ex.user.text.decode("utf-8", "replace") if ex.user.text is not None else None,
                }
                report.failures.append(failure)
                if fail_fast:
                    raise AssertionError(json.dumps(failure, indent=2, ensure_ascii=False))

        return test

    old_path = list(sys.path)
    old_modules = set(sys.modules)
    try:
        with plugin_path(plugin_root):
            if examples_count:
                make_test("inprocess", examples_count)()
            if console_examples:
                env_path = os.environ.get("PYTHONPATH")
                os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin_root), env_path]))
                try:
                    make_test("console", console_examples)()
                finally:
                    if env_path is None:
                        os.environ.pop("PYTHONPATH", None)
                    else:
                        os.environ["PYTHONPATH"] = env_path
    finally:
        sys.path[:] = old_path
        for name in set(sys.modules) - old_modules:
            if name in ("pipeline", "broken", "syntax") or name.startswith("rl_"):
                sys.modules.pop(name, None)
    report.seconds = time.perf_counter() - started
    report.oracles = dict(ws.oracles)
    return report


def main() -> None:  # pragma: no cover - manual use
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with tempfile.TemporaryDirectory() as tmp:
        report = fuzz_cli(count, Path(tmp) / "ws", Path(tmp) / "plugins")
    print(json.dumps(attrs.asdict(report), indent=2, ensure_ascii=False)[:20000])


if __name__ == "__main__":  # pragma: no cover
    main()
