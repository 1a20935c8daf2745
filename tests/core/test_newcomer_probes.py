"""What a newcomer, a plugin author and a platform engineer met when following the documents literally.

One test per finding; each failed before its fix.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.core.helpers import write

REPO = Path(__file__).resolve().parents[2]


# -- an unknown option says how to fix it ------------------------------------------------------------------
def test_an_unknown_option_names_the_closest_option_and_every_option_of_the_flavor(project, run_cli):
    write(project / "stacks.toml", '[stacks.s]\nexecutor = { flavor = "local", max_workerz = 2, colour = "red" }\n')
    validated = run_cli("stack", "validate", "s", "--json", cwd=project)
    assert validated.returncode == 1
    where = f"{project / 'stacks.toml'}: stack 's', executor 'local'"
    assert json.loads(validated.stdout)["problems"] == [
        f"{where}: unknown option 'colour' (options: isolation, max_workers)",
        f"{where}: unknown option 'max_workerz' (did you mean 'max_workers'? options: isolation, max_workers)",
    ]
    assert "Traceback" not in validated.stderr


# -- stack add: the refusal names the stack and the file, and nothing is written ----------------------------
def test_stack_add_refusal_names_the_stack_and_the_file_it_was_meant_for(project, run_cli):
    stacks = project / "stacks.toml"
    one = run_cli("stack", "add", "fast", "--executor", "local:max_wrokers=4", cwd=project)
    assert one.returncode == 1 and not stacks.exists()
    assert one.stderr.strip().splitlines() == [
        f"error: stack not added: nothing was written to {stacks}; stack 'fast', executor 'local': unknown option "
        "'max_wrokers' (did you mean 'max_workers'? options: isolation, max_workers)"
    ]
    write(stacks, '[stacks.s]\nexecutor = "local"\n')
    before = stacks.read_bytes()
    two = run_cli("stack", "add", "fast", "--executor", "local:max_workers=four", "--cache-store", "local:pth=x",
                  cwd=project)
    assert two.returncode == 1 and stacks.read_bytes() == before
    lines = two.stderr.strip().splitlines()
    assert lines[0] == f"error: stack not added: nothing was written to {stacks}"
    assert lines[1:] == [
        "  stack 'fast', executor 'local': option 'max_workers': expected an integer, got the string 'four'",
        "  stack 'fast', cache_store 'local': unknown option 'pth' (did you mean 'path'? options: "
        "allow_unsigned_pickle, path, signing_key, storage_options)",
    ]


# -- a stack whose plugin FLOWYML_DISABLE_PLUGINS blocks says how to get it back -----------------------------
def test_a_disabled_plugin_error_says_how_to_enable_it(project, run_cli):
    write(project / "stacks.toml", '[stacks.s]\nexecutor = "local"\n')
    validated = run_cli("stack", "validate", "s", cwd=project, env={"FLOWYML_DISABLE_PLUGINS": "local"})
    assert validated.returncode == 1
    assert validated.stderr.strip() == (
        f"error: stack 's' cannot be used: {project / 'stacks.toml'}: stack 's', executor 'local': executor flavor "
        "'local' comes from plugin 'local', which FLOWYML_DISABLE_PLUGINS disables; remove 'local' from "
        "FLOWYML_DISABLE_PLUGINS to use it"
    )


# -- stack list with an active choice that names no stack ---------------------------------------------------
def test_stack_list_says_how_to_fix_an_active_choice_that_names_no_stack(project, run_cli):
    write(project / "stacks.toml", '[stacks.s]\nexecutor = "local"\n[stacks.t]\nexecutor = "local"\n')
    by_env = run_cli("stack", "list", cwd=project, env={"FLOWYML_STACK": "typo"})
    assert by_env.returncode == 0, by_env.stderr
    assert by_env.stdout.strip().splitlines()[-1] == (
        "active stack 'typo' (FLOWYML_STACK) is not defined; unset FLOWYML_STACK or set it to a known stack"
    )
    assert run_cli("stack", "use", "t", cwd=project).returncode == 0
    write(project / "stacks.toml", '[stacks.s]\nexecutor = "local"\n')  # t removed by hand
    by_use = run_cli("stack", "list", cwd=project)
    assert by_use.stdout.strip().splitlines()[-1].endswith(
        "is not defined; choose another with: flowyml stack use NAME"
    ), by_use.stdout


# -- CONTRIBUTING: the stack parity contract is part of the plugin walkthrough ------------------------------
def test_the_walkthrough_adopts_the_stack_parity_contract_in_a_block_that_runs():
    """DESIGN.md's kit includes the stack parity contract; the walkthrough must show an author how to adopt it.

    tests/kit/test_walkthrough.py runs every bash block of §2 as written, outside the repository, so
    the block found here is run there against the generated executor.
    """
    guide = (REPO / "CONTRIBUTING.md").read_text(encoding="utf-8")
    section = guide.split("\n## 2. ", 1)[1].split("\n## 3. ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    parity = [b for b in blocks if "StackParityContract" in b]
    assert parity, "no bash block of CONTRIBUTING §2 adopts StackParityContract"
    block = parity[0]
    assert "class TestMyexecStackParity(StackParityContract):" in block
    assert '"flavor": "myexec"' in block and "def parity_stack(self" in block
    assert re.search(r"python -m pytest tests/test_parity\.py\s*$", block)


# -- stack add: a stack of the user's file may be overridden by the project's -------------------------------
def test_stack_add_overrides_a_stack_of_the_users_file_and_remove_brings_it_back(project, run_cli):
    import os

    user_file = Path(os.environ["XDG_CONFIG_HOME"]) / "flowyml" / "stacks.toml"
    user_file.parent.mkdir(parents=True, exist_ok=True)
    write(user_file, '[stacks.shared]\nexecutor = { flavor = "local", max_workers = 2 }\n')
    user_bytes = user_file.read_bytes()
    added = run_cli("stack", "add", "shared", "--executor", "local:max_workers=4", cwd=project)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == (f"added stack shared to {project / 'stacks.toml'} (new file); "
                                    f"it overrides the stack of that name in {user_file}")
    assert user_file.read_bytes() == user_bytes
    shown = json.loads(run_cli("stack", "show", "shared", "--json", cwd=project).stdout)
    assert shown["origin"] == str(project / "stacks.toml") and shown["components"]["executor"]["options"]["max_workers"] == 4
    again = run_cli("stack", "add", "shared", "--executor", "local", cwd=project)
    assert again.returncode == 1 and f"already exists in {project / 'stacks.toml'}; remove it first" in again.stderr
    removed = run_cli("stack", "remove", "shared", cwd=project)
    assert removed.returncode == 0, removed.stderr
    back = json.loads(run_cli("stack", "show", "shared", "--json", cwd=project).stdout)
    assert back["origin"] == str(user_file) and user_file.read_bytes() == user_bytes
