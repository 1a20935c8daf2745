"""What an audit of the stack registry and CLI against DESIGN.md found, each pinned by a test.

``stack show`` shows the problems ``stack validate`` finds in what is written and
never prints a literal secret; ``stack add`` refuses an unknown option whatever
its value; ``stack add`` then ``stack remove`` leaves ``stacks.toml`` as it was;
``runs list --status`` checks its word; wording; the README lists the stacks the
repository's ``stacks.toml`` has.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from flowyml_core.stacks import tomllib
from tests.core.helpers import write

REPO = Path(__file__).resolve().parents[2]

LEAKY = """
    [stacks.g]
    executor = { flavor = "local", max_workerz = 2, api_key = "literal-api-key-1" }
    cache_store = { flavor = "local", path = "c", password = "hunter2", auth = { token = "tok-LEAK3", user = "me" } }
    artifact_store = { flavor = "local", path = "a", signing_key = 12345678 }
"""


def problem_lines(stdout: str) -> list[str]:
    return [line.split("PROBLEM: ", 1)[1] for line in stdout.splitlines() if "PROBLEM: " in line]


# -- 1. stack show: problems as validate words them, literal secrets masked ----------------------------
def test_show_reports_what_validate_refuses_and_masks_undeclared_secret_options(project, run_cli):
    write(project / "stacks.toml", LEAKY)
    validate = run_cli("stack", "validate", "g", "--json", cwd=project)
    assert validate.returncode == 1
    refused = json.loads(validate.stdout)["problems"]
    where = f"{project / 'stacks.toml'}: stack 'g'"
    assert set(refused) >= {f"{where}, executor 'local': unknown option 'api_key' (options: isolation, max_workers)",
                            f"{where}, executor 'local': unknown option 'max_workerz' "
                            "(did you mean 'max_workers'? options: isolation, max_workers)",
                            f"{where}, cache_store 'local': unknown option 'password' "
                            "(options: allow_unsigned_pickle, path, signing_key, storage_options)"}

    shown = run_cli("stack", "show", "g", cwd=project)
    # Informational, like show of a stack whose plugin is missing: exit 0, the problems in the listing.
    assert shown.returncode == 0, shown.stderr
    assert sorted(problem_lines(shown.stdout)) == sorted(refused)
    for secret in ("literal-api-key-1", "hunter2", "tok-LEAK3", "12345678"):
        assert secret not in shown.stdout + shown.stderr

    data = json.loads(run_cli("stack", "show", "g", "--json", cwd=project).stdout)
    components = data["components"]
    assert sorted(p for c in components.values() for p in c.get("problems", [])) == sorted(refused)
    assert components["executor"]["options"] == {"max_workerz": 2, "api_key": "****"}
    assert components["cache_store"]["options"] == {"path": "c", "password": "****",
                                                    "auth": {"token": "****", "user": "me"}}
    assert components["artifact_store"]["options"] == {"path": "a", "signing_key": "****"}  # declared secret


def test_show_masks_secret_looking_keys_inside_a_declared_table(project, run_cli):
    """env_vars is declared (not secret), but a key like WANDB_API_KEY in it holds one."""
    write(project / "stacks.toml", """
        [stacks.d]
        executor = { flavor = "docker", env_vars = { WANDB_API_KEY = "literal-wandb-1", MODE = "fast" } }
    """)
    shown = run_cli("stack", "show", "d", "--json", cwd=project)
    assert shown.returncode == 0, shown.stderr
    assert "literal-wandb-1" not in shown.stdout
    assert json.loads(shown.stdout)["components"]["executor"]["options"]["env_vars"] == {
        "WANDB_API_KEY": "****", "MODE": "fast"}


def test_show_of_a_healthy_stack_has_no_problem_and_reads_no_env_value(project, run_cli):
    write(project / "stacks.toml", """
        [stacks.ok]
        executor = { flavor = "local", max_workers = 2 }
        artifact_store = { flavor = "local", path = "${env:STORE_SECRET_DIR}" }
    """)
    for env in ({}, {"STORE_SECRET_DIR": "dir-value-7c1"}):  # unset or set: show neither needs nor prints it
        shown = run_cli("stack", "show", "ok", "--json", cwd=project, env=env)
        assert shown.returncode == 0, shown.stderr
        components = json.loads(shown.stdout)["components"]
        assert not any("problems" in c for c in components.values()), components
        assert components["artifact_store"]["options"] == {"path": "${env:STORE_SECRET_DIR}"}
        assert "dir-value-7c1" not in shown.stdout


# -- 2. stack add: an unknown option is refused even when its value is a reference ------------------------
@pytest.mark.parametrize("value", ["1", "${env:X}", '"${env:X}"'])
def test_add_refuses_an_unknown_option_whatever_its_value(project, run_cli, value):
    added = run_cli("stack", "add", "new7", "--executor", f"local:bogus={value}", cwd=project,
                    env={"X": "resolved-secret-5d2"})
    assert added.returncode == 1
    assert "stack not added:" in added.stderr and "executor 'local': unknown option 'bogus'" in added.stderr
    text = added.stdout + added.stderr
    assert "resolved-secret-5d2" not in text and "${env:X}" not in text  # neither resolved nor echoed
    assert not (project / "stacks.toml").exists()


def test_add_still_takes_a_reference_in_a_known_option(project, run_cli):
    added = run_cli("stack", "add", "ok", "--executor", "local", "--artifact-store", "local:path=${env:X}",
                    cwd=project)
    assert added.returncode == 0, added.stderr
    data = tomllib.loads((project / "stacks.toml").read_text())
    assert data["stacks"]["ok"]["artifact_store"] == {"flavor": "local", "path": "${env:X}"}


# -- 3. stack add then stack remove: the file as it was, byte for byte --------------------------------------
ORIGINALS = {
    "newline": '[stacks.a]\nexecutor = "local"\n',
    "blank-line": '[stacks.a]\nexecutor = "local"\n\n',
    "blank-lines-and-comment": '# mine\ndefault = "a"\n\n[stacks.a]\nexecutor = "local"  # here\n\n\n# notes\n',
    "crlf": '[stacks.a]\r\nexecutor = "local"\r\n',
}


@pytest.mark.parametrize("original", list(ORIGINALS.values()), ids=list(ORIGINALS))
def test_add_then_remove_leaves_the_file_byte_identical(project, run_cli, original):
    path = project / "stacks.toml"
    path.write_bytes(original.encode())
    for _ in range(3):
        for args in (["add", "x", "--executor", "local", "--artifact-store", "local:path=p"],
                     ["add", "y", "--executor", "local:max_workers=2"], ["remove", "y"], ["remove", "x"]):
            done = run_cli("stack", *args, cwd=project)
            assert done.returncode == 0, done.stderr
        assert path.read_bytes() == original.encode()
    # Removed in the other order: one blank line was left between two stacks, never two.
    for args in (["add", "x", "--executor", "local"], ["add", "y", "--executor", "local"],
                 ["remove", "x"], ["remove", "y"]):
        assert run_cli("stack", *args, cwd=project).returncode == 0
    assert path.read_bytes() == original.encode()


def test_a_file_without_a_final_newline_gets_one_once(project, run_cli):
    """Its last line is ended when a stack is added after it; then cycles change nothing (documented)."""
    path = project / "stacks.toml"
    path.write_bytes(b'[stacks.a]\nexecutor = "local"')
    for _ in range(3):
        assert run_cli("stack", "add", "x", "--executor", "local", cwd=project).returncode == 0
        assert run_cli("stack", "remove", "x", cwd=project).returncode == 0
        assert path.read_bytes() == b'[stacks.a]\nexecutor = "local"\n'


# -- 4. runs list --status ----------------------------------------------------------------------------------
def test_runs_list_refuses_an_unknown_status_and_lists_the_valid_ones(project, run_cli):
    bogus = run_cli("runs", "list", "--status", "bogus", cwd=project)
    assert bogus.returncode == 1 and "Traceback" not in bogus.stderr
    assert "--status 'bogus' is not a run status; use one of: initializing, provisioning, running, completed, " \
           "cached, failed, stopping, stopped, cancelling, cancelled" in bogus.stderr
    as_json = run_cli("runs", "list", "--status", "bogus", "--json", cwd=project)
    assert as_json.returncode == 1 and "is not a run status" in json.loads(as_json.stdout)["error"]
    assert run_cli("runs", "list", "--status", "failed", cwd=project).returncode == 0


# -- 5. wording ------------------------------------------------------------------------------------------
ONE_STEP = """
    from flowyml_core import Pipeline, step

    @step(outputs=["x"])
    def only():
        return 1

    pipeline = Pipeline("one", [only])
"""


def test_one_step_is_one_step_and_an_in_process_run_has_nothing_to_stop(project, run_cli):
    write(project / "pipe.py", ONE_STEP)
    first = run_cli("run", "pipe.py:pipeline", "--run-id", "r1", cwd=project)
    assert first.returncode == 0, first.stderr
    assert "running one on stack local (1 step, run r1)" in first.stdout
    second = run_cli("run", "pipe.py:pipeline", "--run-id", "r2", cwd=project)
    assert "fully cached: its one step came from the cache" in second.stdout
    assert "1 steps" not in first.stdout + second.stdout
    stop = run_cli("runs", "stop", "r1", cwd=project)
    assert stop.returncode == 1 and "so there is nothing to stop;" in stop.stderr
    logs = run_cli("runs", "logs", "r1", cwd=project)
    assert logs.returncode == 1 and "so there are no remote logs to read;" in logs.stderr


# -- 6. the README lists the repository's stacks ----------------------------------------------------------
def readme_stacks() -> set[str]:
    """The stack names of the list that follows "This repository's [`stacks.toml`]" in README.md."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("This repository's [`stacks.toml`](stacks.toml) has these stacks")
    names: set[str] = set()
    lines = text[start:].splitlines()[1:]
    while lines and not lines[0].startswith("- "):
        lines.pop(0)  # the rest of the sentence, then the blank line before the list
    for line in lines:
        if not line.startswith("- "):
            break
        names.update(re.findall(r"`([^`]+)`", line.split(": ", 1)[0]))
    return names


def test_the_readme_lists_exactly_the_stacks_of_the_repository_file():
    shipped = set(tomllib.loads((REPO / "stacks.toml").read_text(encoding="utf-8"))["stacks"])
    assert readme_stacks() == shipped
