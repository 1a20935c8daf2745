"""The real ``flowyml`` console script: running on stacks, listings, exit codes, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.core.helpers import write

PIPELINE = """
    from flowyml_core import Pipeline, step

    @step(outputs=["numbers"])
    def load(n=3):
        print("loading", n)
        return list(range(n))

    @step(inputs=["numbers"], outputs=["total"])
    def total(numbers, fail=False):
        if fail:
            raise RuntimeError("asked to fail")
        return sum(numbers)

    pipeline = Pipeline("cli-demo", [load, total])
"""

STACKS = """
    # hand-written: keep this comment
    default = "d"

    [stacks.a]
    executor = { flavor = "echo", prefix = "A" }
    cache_store = "memory"

    [stacks.b]
    executor = { flavor = "echo", prefix = "B" }

    [stacks.c]
    executor = { flavor = "echo", prefix = "C" }

    [stacks.d]
    executor = { flavor = "echo", prefix = "D" }
    router = "null"
"""


@pytest.fixture
def demo(project: Path) -> Path:
    write(project / "pipe.py", PIPELINE)
    write(project / "stacks.toml", STACKS)
    return project


def snapshot(*roots: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under the roots with its bytes and modification time."""
    files = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                files[str(path)] = (path.read_bytes(), path.stat().st_mtime_ns)
    return files


def xdg() -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"])


# -- running a pipeline on the test plugin's executor ----------------------------------------
def test_run_on_a_third_party_executor_with_stack_flag(demo, run_cli, events):
    out = run_cli("run", "pipe.py:pipeline", "--stack", "a", "--param", "n=4", cwd=demo)
    assert out.returncode == 0, out.stderr
    assert "[A] load\n" in out.stdout and "[A] total\n" in out.stdout
    assert "on stack a" in out.stdout and "2 ran" in out.stdout
    got = events()
    assert got[0]["event"] == "run_start" and got[0]["stack"] == "a" and got[0]["pipeline"] == "cli-demo"
    assert [e["step"] for e in got if e["event"] == "step_end"] == ["load", "total"]
    assert got[-1]["event"] == "run_end" and got[-1]["status"] == "completed"


def test_failing_step_exits_1_and_says_which_step(demo, run_cli):
    out = run_cli("run", "pipe.py:pipeline", "--stack", "b", "--param", "fail=true", cwd=demo)
    assert out.returncode == 1
    assert "[B] total" in out.stdout
    assert "'total'" in out.stderr and "asked to fail" in out.stderr


@pytest.mark.parametrize(
    "args, env, use, expected",
    [
        (["--stack", "a"], {"FLOWYML_STACK": "b"}, "c", "A"),   # --stack beats everything
        ([], {"FLOWYML_STACK": "b"}, "c", "B"),                 # then FLOWYML_STACK
        ([], {}, "c", "C"),                                      # then `flowyml stack use`
        ([], {}, None, "D"),                                     # then default
    ],
)
def test_stack_precedence_through_the_cli(demo, run_cli, args, env, use, expected):
    if use:
        used = run_cli("stack", "use", use, cwd=demo)
        assert used.returncode == 0 and f"active stack: {use}" in used.stdout
    out = run_cli("run", "pipe.py:pipeline", *args, cwd=demo, env=env)
    assert out.returncode == 0, out.stderr
    assert f"[{expected}] load" in out.stdout
    assert set("ABCD") - {expected} == {p for p in "ABCD" if f"[{p}]" not in out.stdout}


def test_local_is_the_fallback_and_stack_use_persists(demo, run_cli):
    (demo / "stacks.toml").write_text((demo / "stacks.toml").read_text().replace('default = "d"', ""))
    listing = json.loads(run_cli("stack", "list", "--json", cwd=demo).stdout)
    assert (listing["active"], listing["active_because"]) == ("local", "fallback")
    assert run_cli("stack", "use", "b", cwd=demo).returncode == 0
    assert (demo / ".flowyml" / "active-stack").read_text() == "b\n"
    listing = json.loads(run_cli("stack", "list", "--json", cwd=demo).stdout)
    assert listing["active"] == "b" and "stack use" in listing["active_because"]
    env_wins = json.loads(run_cli("stack", "list", "--json", cwd=demo, env={"FLOWYML_STACK": "c"}).stdout)
    assert env_wins["active"] == "c" and env_wins["active_because"] == "FLOWYML_STACK"


# -- listings -------------------------------------------------------------------------------------
def test_stack_list(demo, run_cli):
    write(xdg() / "flowyml" / "stacks.toml", '[stacks.mine]\nexecutor = "echo"\n[stacks.a]\nexecutor = "echo"\n')
    data = json.loads(run_cli("stack", "list", "--json", cwd=demo).stdout)
    rows = {r["name"]: r for r in data["stacks"]}
    assert list(rows) == ["a", "b", "c", "d", "local", "mine"]
    assert rows["a"]["origin"] == str(demo / "stacks.toml")  # project over user
    assert rows["mine"]["origin"] == str(xdg() / "flowyml" / "stacks.toml")
    assert rows["local"]["origin"] == "built-in"
    assert rows["d"]["active"] and rows["d"]["default"] and not rows["a"]["active"]
    assert data["active"] == "d" and data["active_because"].startswith("default in ")
    text = run_cli("stack", "list", cwd=demo).stdout
    assert "* d" in text and "  a" in text and "(* active: d" in text


def test_stack_show_masks_secrets_text_and_json(demo, run_cli):
    write(demo / "stacks.toml", """
        [stacks.s]
        executor = { flavor = "echo", prefix = "P", token = "literal-s3cret" }
        cache_store = { flavor = "memory", max_entries = 3 }

        [stacks.e]
        executor = { flavor = "echo", token = "${env:ECHO_TOKEN}" }
    """)
    env = {"ECHO_TOKEN": "env-s3cret"}
    for args in (["s"], ["s", "--json"], ["e"], ["e", "--json"]):
        out = run_cli("stack", "show", *args, cwd=demo, env=env)
        assert out.returncode == 0, out.stderr
        assert "s3cret" not in out.stdout + out.stderr
    data = json.loads(run_cli("stack", "show", "s", "--json", cwd=demo).stdout)
    assert data["components"]["executor"] == {"flavor": "echo", "plugin": "testplugin",
                                              "options": {"prefix": "P", "token": "****"}}
    assert data["components"]["cache_store"]["options"] == {"max_entries": 3}
    shown = json.loads(run_cli("stack", "show", "e", "--json", cwd=demo, env=env).stdout)
    assert shown["components"]["executor"]["options"]["token"] == "${env:ECHO_TOKEN}"  # the reference, not the value


def test_stack_show_defaults_to_the_active_stack(demo, run_cli):
    data = json.loads(run_cli("stack", "show", "--json", cwd=demo, env={"FLOWYML_STACK": "b"}).stdout)
    assert data["name"] == "b" and data["active_because"] == "FLOWYML_STACK"


def test_stack_validate(demo, run_cli):
    write(demo / "stacks.toml", """
        [stacks.good]
        executor = "echo"

        [stacks.needs-token]
        executor = { flavor = "echo", require_token = true }

        [stacks.bad-token]
        executor = { flavor = "echo", token = "${env:ECHO_TOKEN}" }
    """)
    ok = run_cli("stack", "validate", "good", cwd=demo)
    assert ok.returncode == 0 and ok.stdout.strip() == "stack good is valid"
    assert json.loads(run_cli("stack", "validate", "good", "--json", cwd=demo).stdout) == {
        "name": "good", "valid": True, "problems": []}
    bad = run_cli("stack", "validate", "needs-token", cwd=demo)
    assert bad.returncode == 1 and "require_token is set but no token is configured" in bad.stderr
    as_json = run_cli("stack", "validate", "needs-token", "--json", cwd=demo)
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["valid"] is False
    secret = run_cli("stack", "validate", "bad-token", cwd=demo, env={"ECHO_TOKEN": "bad-0xDEADBEEF"})
    assert secret.returncode == 1 and "is not accepted" in secret.stderr
    assert "DEADBEEF" not in secret.stderr + secret.stdout


def test_every_listing_accepts_json(demo, run_cli):
    for args in (["plugins"], ["stack", "list"], ["stack", "show", "a"], ["stack", "validate", "a"], ["runs", "list"]):
        out = run_cli(*args, "--json", cwd=demo)
        assert out.returncode == 0, (args, out.stderr)
        assert isinstance(json.loads(out.stdout), dict)


def test_runs_needs_a_remote_stack(demo, run_cli):
    out = run_cli("runs", "status", "job-1", "--stack", "a", "--json", cwd=demo)
    assert out.returncode == 1
    assert "does not track remote runs" in out.stderr and "Traceback" not in out.stderr


def test_runs_of_an_unknown_run_on_a_local_stack_says_no_such_run(demo, run_cli):
    for action in ("status", "logs", "stop"):
        out = run_cli("runs", action, "zzzz", cwd=demo)
        assert out.returncode == 1, out.stdout
        assert out.stderr.startswith(f"error: no run zzzz is recorded in {demo / '.flowyml' / 'runs'} (see: flowyml "
                                     "runs list)"), out.stderr
        assert "pass --stack with the remote stack it ran on" in out.stderr and "Traceback" not in out.stderr


# -- exit codes, errors, --debug -----------------------------------------------------------------
@pytest.mark.parametrize("args", [[], ["nope"], ["stack"], ["stack", "add", "x"], ["run"], ["stack", "list", "--bogus"],
                                  ["runs", "pause", "j"]])
def test_usage_errors_exit_2(run_cli, project, args):
    out = run_cli(*args, cwd=project)
    assert out.returncode == 2 and "usage:" in out.stderr


def test_errors_are_one_line_without_traceback_unless_debug(demo, run_cli):
    out = run_cli("stack", "show", "nope", cwd=demo)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: unknown stack 'nope' (known: a, b, c, d, local")
    debug = run_cli("--debug", "stack", "show", "nope", cwd=demo)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr and "ConfigError: unknown stack 'nope'" in debug.stderr


def test_debug_is_accepted_after_the_command_too(demo, run_cli):
    debug = run_cli("stack", "show", "nope", "--debug", cwd=demo)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_pipeline_target_errors(demo, run_cli):
    for target, fragment in [
        ("pipe.py", "is not MODULE_OR_FILE:PIPELINE"),
        ("pipe.py:nothing", "has no attribute 'nothing' (pipelines defined there: pipeline)"),
        ("missing.py:p", "does not exist"),
        ("no_such_module_xyz:p", "no module named 'no_such_module_xyz'"),
        ("pipe.py:step", "is a function, not a flowyml Pipeline"),
    ]:
        out = run_cli("run", target, "--stack", "a", cwd=demo)
        assert out.returncode == 1 and fragment in out.stderr, (target, out.stderr)
        assert "Traceback" not in out.stderr
    bad_param = run_cli("run", "pipe.py:pipeline", "--param", "novalue", cwd=demo)
    assert bad_param.returncode == 1 and "is not NAME=VALUE" in bad_param.stderr


# -- bad input: one clear error, exit 1, nothing modified ---------------------------------------------
ALL_COMMANDS = [
    ["stack", "list"], ["stack", "show"], ["stack", "validate"], ["stack", "use", "a"],
    ["stack", "add", "new", "--executor", "echo"], ["stack", "remove", "a"], ["run", "pipe.py:pipeline"],
    ["run", "pipe.py:pipeline", "--stack", "a"],
]

BROKEN_FILES = {
    "broken toml": ('[stacks.a]\nexecutor = { flavor = "echo" \n', "line 2, column"),
    "wrong type": ('[stacks.a]\nexecutor = 3\n', "executor must be a flavor name or a table"),
    "unknown stack key": ('[stacks.a]\nexecutor = "echo"\ncolour = "red"\n', "unknown key 'colour'"),
    "unknown top key": ('stack = {}\n[stacks.a]\nexecutor = "echo"\n', "unknown top-level key 'stack'"),
    "default names no stack": ('default = "zz"\n[stacks.a]\nexecutor = "echo"\n', "default = 'zz' names no stack"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_FILES))
def test_broken_stacks_file_fails_every_command_cleanly(demo, run_cli, case):
    text, fragment = BROKEN_FILES[case]
    (demo / "stacks.toml").write_text(text)
    before = snapshot(demo, xdg())
    for args in ALL_COMMANDS:
        out = run_cli(*args, cwd=demo)
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        assert out.stderr.startswith("error: ") and fragment in out.stderr, (args, out.stderr)
        assert str(demo / "stacks.toml") in out.stderr
        assert "Traceback" not in out.stderr
    assert snapshot(demo, xdg()) == before


@pytest.mark.parametrize("args", [a for a in ALL_COMMANDS if a[:2] != ["stack", "add"]] + [["stack", "show", "a"]])
def test_flowyml_stacks_file_naming_a_missing_file_fails_cleanly(demo, run_cli, tmp_path, args):
    missing = tmp_path / "conf" / "stcks.toml"  # a typo: it must not fall back to the built-in local stack
    before = snapshot(demo, xdg())
    out = run_cli(*args, cwd=demo, env={"FLOWYML_STACKS_FILE": str(missing)})
    assert out.returncode == 1, (args, out.stdout, out.stderr)
    assert out.stdout == "" and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr == (
        f"error: FLOWYML_STACKS_FILE={missing}: no such file; fix the path, create the file "
        "(flowyml stack add NAME --executor FLAVOR writes it), or unset FLOWYML_STACKS_FILE to use ./stacks.toml\n"
    )
    assert snapshot(demo, xdg()) == before and not missing.parent.exists()


def test_stack_add_creates_the_file_flowyml_stacks_file_names(demo, run_cli, tmp_path):
    target = tmp_path / "conf" / "team-stacks.toml"
    target.parent.mkdir()
    env = {"FLOWYML_STACKS_FILE": str(target)}
    added = run_cli("stack", "add", "team", "--executor", "echo:prefix=T", cwd=demo, env=env)
    assert added.returncode == 0, added.stderr
    assert added.stdout == f"added stack team to {target} (new file)\n"
    from flowyml_core.stacks import tomllib

    assert tomllib.loads(target.read_text()) == {"stacks": {"team": {"executor": {"flavor": "echo", "prefix": "T"}}}}
    listed = run_cli("stack", "list", "--json", cwd=demo, env=env)
    rows = {r["name"]: r["origin"] for r in json.loads(listed.stdout)["stacks"]}
    assert rows == {"team": str(target), "local": "built-in"}  # ./stacks.toml is not read when the variable is set
    # A second add appends to the file it created, and says nothing about a new file.
    again = run_cli("stack", "add", "more", "--executor", "echo", cwd=demo, env=env)
    assert again.stdout == f"added stack more to {target}\n"


def test_stack_add_does_not_create_the_directory_flowyml_stacks_file_names(demo, run_cli, tmp_path):
    target = tmp_path / "cnof" / "stacks.toml"
    before = snapshot(demo, xdg())
    out = run_cli("stack", "add", "team", "--executor", "echo", cwd=demo, env={"FLOWYML_STACKS_FILE": str(target)})
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == (
        f"error: FLOWYML_STACKS_FILE={target}: directory {target.parent} does not exist; "
        "create it, fix the path, or unset FLOWYML_STACKS_FILE to use ./stacks.toml\n"
    )
    assert not target.parent.exists() and snapshot(demo, xdg()) == before


def test_broken_user_file_is_named(demo, run_cli):
    user = write(xdg() / "flowyml" / "stacks.toml", "[stacks.x\n")
    out = run_cli("stack", "list", cwd=demo)
    assert out.returncode == 1 and str(user) in out.stderr and "line 1, column" in out.stderr


BAD_STACKS = """
    [stacks.ok]
    executor = "echo"

    [stacks.wrongtype]
    executor = { flavor = "echo", repeat = "many" }

    [stacks.unknownopt]
    executor = { flavor = "echo", colour = "red" }

    [stacks.unknownflavor]
    executor = "vertex-ai-typo"

    [stacks.knownflavor]
    executor = "dask"
    cache_store = "gcs"

    [stacks.missingenv]
    executor = { flavor = "echo", token = "${env:FLOWYML_TEST_UNSET}" }
"""


@pytest.mark.parametrize(
    "stack, fragments",
    [
        ("wrongtype", ["stack 'wrongtype', executor 'echo': option 'repeat'"]),
        ("unknownopt", ["stack 'unknownopt', executor 'echo': unknown option 'colour'"]),
        ("unknownflavor", ["unknown executor flavor 'vertex-ai-typo'", "install the plugin that provides it"]),
        ("missingenv", ["option 'token': environment variable FLOWYML_TEST_UNSET is not set"]),
        ("nosuchstack", ["unknown stack 'nosuchstack' (known: ", "knownflavor, local, missingenv, ok"]),
    ],
)
def test_bad_stack_is_one_clear_error_and_modifies_nothing(demo, run_cli, stack, fragments):
    write(demo / "stacks.toml", BAD_STACKS)
    before = snapshot(demo, xdg())
    for args in (["stack", "validate", stack], ["run", "pipe.py:pipeline", "--stack", stack]):
        out = run_cli(*args, cwd=demo)
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        for fragment in fragments:
            assert fragment in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr
        if stack != "nosuchstack":
            assert str(demo / "stacks.toml") in out.stderr
    if stack == "nosuchstack":
        for args in (["stack", "use", stack], ["stack", "remove", stack], ["stack", "show", stack]):
            out = run_cli(*args, cwd=demo)
            assert out.returncode == 1 and "unknown stack 'nosuchstack'" in out.stderr
    assert snapshot(demo, xdg()) == before
    assert run_cli("stack", "validate", "ok", cwd=demo).returncode == 0


def test_known_flavors_not_installed_name_their_package(demo, run_cli, tmp_path):
    # "Uninstall" flowyml-dask and flowyml-gcs for this process only: a dist-info
    # of the same name earlier on the path, with no entry points, shadows the
    # installed one (for our scanner as for importlib.metadata).
    shadow = tmp_path / "shadow"
    for dist in ("flowyml_dask", "flowyml_gcs"):
        write(shadow / f"{dist}-0.0.dist-info" / "entry_points.txt", "[flowyml.plugins]\n")
        write(shadow / f"{dist}-0.0.dist-info" / "METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0\n")
    env = {"PYTHONPATH": str(shadow)}
    installed = {
        (kind, name)
        for p in json.loads(run_cli("plugins", "--json", env=env).stdout)["plugins"]
        for kind, names in p["flavors"].items()
        for name in names
    }
    assert ("executor", "dask") not in installed and ("cache_store", "gcs") not in installed
    write(demo / "stacks.toml", BAD_STACKS)
    out = run_cli("stack", "validate", "knownflavor", cwd=demo, env=env)
    assert out.returncode == 1
    assert "unknown executor flavor 'dask'" in out.stderr and "pip install flowyml-dask" in out.stderr
    assert "unknown cache store flavor 'gcs'" in out.stderr and "pip install flowyml-gcs" in out.stderr


def test_disabled_plugin_named_by_a_stack(demo, run_cli):
    before = snapshot(demo, xdg())
    out = run_cli("run", "pipe.py:pipeline", "--stack", "a", cwd=demo, env={"FLOWYML_DISABLE_PLUGINS": "testplugin"})
    assert out.returncode == 1
    assert "unknown executor flavor 'echo'" in out.stderr
    assert "FLOWYML_DISABLE_PLUGINS disables testplugin" in out.stderr
    local = run_cli("stack", "validate", "local", cwd=demo, env={"FLOWYML_DISABLE_PLUGINS": "local"})
    assert local.returncode == 1
    assert "comes from plugin 'local', which FLOWYML_DISABLE_PLUGINS disables" in local.stderr
    assert snapshot(demo, xdg()) == before


def test_secret_never_printed_when_construction_fails(demo, run_cli):
    write(demo / "stacks.toml", '[stacks.s]\nexecutor = { flavor = "echo", token = "${env:ECHO_TOKEN}" }\n')
    out = run_cli("run", "pipe.py:pipeline", "--stack", "s", cwd=demo, env={"ECHO_TOKEN": "explode"})
    assert out.returncode == 1 and "token '****' was refused" in out.stderr
    assert "explode" not in out.stderr + out.stdout


def test_run_refuses_a_pipeline_file_that_would_shadow_a_module(tmp_path, run_cli):
    (tmp_path / "json.py").write_text(
        "from flowyml_core import Pipeline, step\n"
        "@step(outputs='x')\n"
        "def one():\n    return 1\n"
        "pipeline = Pipeline('shadow', [one])\n"
    )
    result = run_cli("run", "json.py:pipeline", cwd=tmp_path)
    assert result.returncode == 1
    assert "would be imported as module 'json'" in result.stderr
    assert "rename the file" in result.stderr
    assert "Traceback" not in result.stderr
