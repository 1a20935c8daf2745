"""``stack add`` / ``stack remove`` keep everything a person wrote, or refuse and touch nothing."""

from __future__ import annotations

import os
import stat
import textwrap

import pytest

from flowyml_core.errors import ConfigError
from flowyml_core.stack_edit import add_stack, parse_component_arg, remove_stack
from flowyml_core.stacks import StackRegistry, tomllib

HAND_WRITTEN = textwrap.dedent('''\
    # Stacks of the acme project.   Trailing spaces and odd spacing are kept.
    default   =   "a"        # the default

    [stacks.a]
    description = """
    multi-line
    [stacks.fake] inside a string
    """
    executor = "echo"  # inline comment

    # b is for batch
    [ stacks . b ]   # spaced header
    executor = { flavor = "echo", prefix = "B" }
    # a comment that ends b

    [stacks.bb]
    executor = "echo"

    [stacks."gcp-prod"]
    executor = "echo"

    [stacks."gcp-prod".cache_store]
    flavor = "memory"
    max_entries = 10

    [stacks.b.cache_store]
    flavor = "memory"
''')


def registry(project, **env):
    return StackRegistry.load({"XDG_CONFIG_HOME": str(project.parent / "xdg"), **env}, cwd=project)


def parse(path):
    return tomllib.loads(path.read_text())


@pytest.fixture
def stacks(project):
    path = project / "stacks.toml"
    path.write_text(HAND_WRITTEN)
    return path


def test_add_appends_and_keeps_every_byte(stacks, project):
    add_stack(registry(project), "new", {"executor": {"flavor": "echo", "prefix": "N"}, "cache_store": "memory"})
    text = stacks.read_text()
    assert text.startswith(HAND_WRITTEN)
    assert parse(stacks)["stacks"]["new"] == {"executor": {"flavor": "echo", "prefix": "N"}, "cache_store": "memory"}
    assert registry(project).resolve("new").executor.config.prefix == "N"
    assert [p.name for p in project.iterdir()] == ["stacks.toml"]  # no temp file left behind


def test_add_to_a_file_without_final_newline_and_to_no_file(project):
    path = project / "stacks.toml"
    path.write_text('[stacks.x]\nexecutor = "echo" # no newline')
    add_stack(registry(project), "y", {"executor": "echo"})
    assert path.read_text().startswith('[stacks.x]\nexecutor = "echo" # no newline\n')
    assert set(parse(path)["stacks"]) == {"x", "y"}
    path.unlink()
    add_stack(registry(project), "z", {"executor": "echo"})
    assert parse(path) == {"stacks": {"z": {"executor": "echo"}}}


def test_add_keeps_file_permissions(stacks, project):
    os.chmod(stacks, 0o640)
    add_stack(registry(project), "new", {"executor": "echo"})
    assert stat.S_IMODE(stacks.stat().st_mode) == 0o640


def test_add_existing_name_is_refused(stacks, project):
    with pytest.raises(ConfigError, match="stack 'bb' already exists in .*stacks.toml; remove it first"):
        add_stack(registry(project), "bb", {"executor": "echo"})
    assert stacks.read_text() == HAND_WRITTEN


def test_add_to_inline_table_stacks_is_refused_and_file_untouched(project):
    path = project / "stacks.toml"
    original = 'stacks = { a = { executor = "echo" } }  # all inline\n'
    path.write_text(original)
    with pytest.raises(ConfigError) as info:
        add_stack(registry(project), "b", {"executor": "echo"})
    assert "cannot add stack 'b'" in str(info.value) and "edit the file by hand" in str(info.value)
    assert "The file was not changed" in str(info.value)
    assert path.read_text() == original


def expected_after_removing(text: str, *sections: str) -> str:
    for section in sections:
        assert section in text
        text = text.replace(section, "", 1)
    return text


def test_remove_cuts_only_the_stack_and_its_sub_tables(stacks, project):
    remove_stack(registry(project), "b")
    assert stacks.read_text() == expected_after_removing(
        HAND_WRITTEN,
        '[ stacks . b ]   # spaced header\nexecutor = { flavor = "echo", prefix = "B" }\n',
        '\n[stacks.b.cache_store]\nflavor = "memory"\n',  # with the blank line before it: none piles up
    )
    assert set(parse(stacks)["stacks"]) == {"a", "bb", "gcp-prod"}


def test_remove_quoted_name_with_sub_table(stacks, project):
    remove_stack(registry(project), "gcp-prod")
    assert stacks.read_text() == expected_after_removing(
        HAND_WRITTEN,
        # With the blank line before it: two blank lines were left between bb and b.cache_store.
        '\n[stacks."gcp-prod"]\nexecutor = "echo"\n\n[stacks."gcp-prod".cache_store]\nflavor = "memory"\nmax_entries = 10\n',
    )


def test_remove_similar_prefix_keeps_the_other(stacks, project):
    remove_stack(registry(project), "bb")
    assert stacks.read_text() == expected_after_removing(HAND_WRITTEN, '\n[stacks.bb]\nexecutor = "echo"\n')
    assert "b" in parse(stacks)["stacks"]


def test_remove_then_add_back_round_trips_the_data(stacks, project):
    before = parse(stacks)["stacks"]["gcp-prod"]
    remove_stack(registry(project), "gcp-prod")
    add_stack(registry(project), "gcp-prod", before)
    assert parse(stacks)["stacks"]["gcp-prod"] == before


def test_remove_keeps_comments_after_the_stack_at_the_end_of_the_file(project):
    path = project / "stacks.toml"
    path.write_text('[stacks.x]\nexecutor = "echo"\n[stacks.y]\nexecutor = "echo"\n\n# notes for later\n')
    remove_stack(registry(project), "y")
    assert path.read_text() == '[stacks.x]\nexecutor = "echo"\n\n# notes for later\n'


def test_remove_the_last_stack(project):
    path = project / "stacks.toml"
    path.write_text('# my only stack\n[stacks.solo]\nexecutor = "echo"\n')
    remove_stack(registry(project), "solo")
    assert path.read_text() == "# my only stack\n"


@pytest.mark.parametrize(
    "text",
    [
        '[stacks]\nx = { executor = "echo" }\ny = { executor = "echo" }\n',
        'stacks.x.executor = "echo"\nstacks.y.executor = "echo"\n',
        '[stacks.y]\nexecutor = "echo"\n[stacks.x]\ndescription = """\n[stacks.y]\n"""\nexecutor = "echo"\n',
    ],
    ids=["inline-tables", "dotted-keys", "header-inside-string"],
)
def test_remove_refuses_when_it_cannot_cut_cleanly(project, text):
    path = project / "stacks.toml"
    path.write_text(text)
    before = path.stat().st_mtime_ns
    with pytest.raises(ConfigError) as info:
        remove_stack(registry(project), "x")
    assert "cannot remove stack 'x'" in str(info.value) and "The file was not changed" in str(info.value)
    assert path.read_text() == text and path.stat().st_mtime_ns == before


def test_remove_default_or_built_in_is_refused(stacks, project):
    with pytest.raises(ConfigError, match="stack 'a' is the default in .*; change 'default' first"):
        remove_stack(registry(project), "a")
    with pytest.raises(ConfigError, match="stack 'local' is built in"):
        remove_stack(registry(project), "local")
    with pytest.raises(ConfigError, match="unknown stack 'zz'"):
        remove_stack(registry(project), "zz")
    assert stacks.read_text() == HAND_WRITTEN


def test_remove_from_the_user_file(project):
    user = project.parent / "xdg" / "flowyml" / "stacks.toml"
    user.parent.mkdir(parents=True)
    user.write_text('# mine\n[stacks.u]\nexecutor = "echo"\n\n[stacks.v]\nexecutor = "echo"\n')
    assert remove_stack(registry(project), "u") == user
    assert user.read_text() == '# mine\n\n[stacks.v]\nexecutor = "echo"\n'


@pytest.mark.parametrize(
    "arg, expected",
    [
        ("echo", "echo"),
        ("echo:prefix=P", {"flavor": "echo", "prefix": "P"}),
        ("echo:repeat=2,require_token=true", {"flavor": "echo", "repeat": 2, "require_token": True}),
        ('echo:token="${env:TOK}",prefix=a b', {"flavor": "echo", "token": "${env:TOK}", "prefix": "a b"}),
        ('memory:tags=["x", "y"],max_entries=3', {"flavor": "memory", "tags": ["x", "y"], "max_entries": 3}),
        ('echo:prefix="a,b"', {"flavor": "echo", "prefix": "a,b"}),
    ],
)
def test_component_arguments(arg, expected):
    assert parse_component_arg("executor", arg) == expected


@pytest.mark.parametrize("arg, fragment", [(":x=1", "needs a flavor"), ("echo:novalue", "is not key=value")])
def test_bad_component_arguments(arg, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_component_arg("executor", arg)


# -- through the CLI ---------------------------------------------------------------------------
def test_cli_add_and_remove(stacks, project, run_cli):
    env = {"TOK": "never-written"}
    out = run_cli("stack", "add", "dev", "--executor", 'echo:prefix=DEV,token="${env:TOK}"', "--cache-store",
                  "memory:max_entries=5", "--router", "null", cwd=project, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"added stack dev to {stacks}"
    text = stacks.read_text()
    assert text.startswith(HAND_WRITTEN) and "${env:TOK}" in text and "never-written" not in text
    assert parse(stacks)["stacks"]["dev"]["executor"] == {"flavor": "echo", "prefix": "DEV", "token": "${env:TOK}"}
    assert run_cli("stack", "validate", "dev", cwd=project, env=env).returncode == 0
    out = run_cli("stack", "remove", "dev", cwd=project)
    # Even the blank line that add put before the new header goes.
    assert out.returncode == 0 and stacks.read_text() == HAND_WRITTEN


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--executor", "kubeflow"], "unknown executor flavor 'kubeflow'"),
        (["--executor", "echo:colour=red"], "executor 'echo': unknown option 'colour'"),
        (["--executor", "echo:repeat=many"], "executor 'echo': option 'repeat'"),
        (["--executor", "echo", "--router", "null:x=1"], "router 'null': this flavor takes no options"),
        (["--executor", "echo:oops"], "is not key=value"),
    ],
)
def test_cli_add_refuses_bad_components_and_leaves_the_file(stacks, project, run_cli, args, fragment):
    out = run_cli("stack", "add", "dev", *args, cwd=project)
    assert out.returncode == 1 and fragment in out.stderr, out.stderr
    assert stacks.read_text() == HAND_WRITTEN


def test_cli_refusals_leave_files_untouched(project, run_cli):
    path = project / "stacks.toml"
    original = '[stacks]\nx = { executor = "echo" }\n'
    path.write_text(original)
    out = run_cli("stack", "remove", "x", cwd=project)
    assert out.returncode == 1 and "cannot remove stack 'x'" in out.stderr and "Traceback" not in out.stderr
    assert path.read_text() == original


@pytest.mark.parametrize("name", ["", "  "])
def test_add_refuses_a_blank_name(project, name):
    with pytest.raises(ConfigError, match="needs a stack name"):
        add_stack(registry(project), name, {"executor": "echo"})
    assert not (project / "stacks.toml").exists()


def test_odd_names_round_trip(project):
    for name in ("a.b", "x y", "ünïcode"):
        add_stack(registry(project), name, {"executor": "echo"})
    assert set(registry(project).stacks) == {"a.b", "x y", "ünïcode", "local"}
    for name in ("a.b", "x y", "ünïcode"):
        remove_stack(registry(project), name)
    assert (project / "stacks.toml").read_text().strip() == ""


def test_crlf_line_ends_are_kept_and_a_lone_carriage_return_is_invalid(project):
    """The file is read as bytes: text-mode reading turned "\\r" into "\\n" (accepting invalid TOML,
    found by the long CLI fuzz) and would have rewritten a CRLF file's line ends on edit."""
    path = project / "stacks.toml"
    path.write_bytes(b'default = "a"\r\n[stacks.a]\r\nexecutor = "local"\r\n')
    add_stack(StackRegistry.load(), "b", {"executor": "local"})
    remove_stack(StackRegistry.load(), "b")
    assert path.read_bytes() == b'default = "a"\r\n[stacks.a]\r\nexecutor = "local"\r\n'
    path.write_bytes(b"\r")
    with pytest.raises(ConfigError, match=r"stacks.toml: invalid TOML: .*\(at line 1, column 1\)"):
        StackRegistry.load()
