"""The stack registry in process: files, precedence, structuring, env references, secrets."""

from __future__ import annotations

import json

import pytest

from flowyml_core.errors import ConfigError, FlowymlError
from flowyml_core.stacks import StackRegistry, user_stacks_path
from flowyml_testplugin.components import EchoExecutor, MemoryCacheStore
from tests.core.helpers import write

FOUR = """
    default = "d"

    [stacks.a]
    executor = { flavor = "echo", prefix = "A" }

    [stacks.b]
    executor = { flavor = "echo", prefix = "B" }

    [stacks.c]
    executor = { flavor = "echo", prefix = "C" }

    [stacks.d]
    executor = { flavor = "echo", prefix = "D" }
"""


def load(project, **env):
    environ = {"XDG_CONFIG_HOME": str(project.parent / "xdg"), **env}
    return StackRegistry.load(environ, cwd=project)


def prefix(registry, name=None):
    return registry.resolve(name).executor.config.prefix


def test_no_files_gives_the_built_in_local_stack(project):
    registry = load(project)
    assert list(registry.stacks) == ["local"] and registry.stacks["local"].origin == "built-in"
    assert registry.active() == ("local", "fallback")


def test_project_file_wins_over_user_file(project):
    write(project.parent / "xdg" / "flowyml" / "stacks.toml", """
        default = "useronly"
        [stacks.shared]
        executor = { flavor = "echo", prefix = "user" }
        [stacks.useronly]
        executor = { flavor = "echo", prefix = "mine" }
    """)
    write(project / "stacks.toml", """
        [stacks.shared]
        executor = { flavor = "echo", prefix = "project" }
    """)
    registry = load(project)
    assert registry.stacks["shared"].origin == str(project / "stacks.toml")
    assert registry.stacks["useronly"].origin.endswith("xdg/flowyml/stacks.toml")
    assert prefix(registry, "shared") == "project" and prefix(registry, "useronly") == "mine"
    assert registry.active()[0] == "useronly"  # the user's default applies when the project sets none


def test_user_file_follows_xdg_and_home(tmp_path):
    assert user_stacks_path({"XDG_CONFIG_HOME": "/x"}).as_posix() == "/x/flowyml/stacks.toml"
    assert user_stacks_path({"HOME": "/home/u"}).as_posix() == "/home/u/.config/flowyml/stacks.toml"


def test_flowyml_stacks_file_replaces_the_project_file(project, tmp_path):
    elsewhere = write(tmp_path / "conf" / "my-stacks.toml", """
        [stacks.far]
        executor = "echo"
    """)
    write(project / "stacks.toml", "[stacks.near]\nexecutor = 'echo'\n")
    registry = load(project, FLOWYML_STACKS_FILE=str(elsewhere))
    assert "far" in registry.stacks and "near" not in registry.stacks


def test_flowyml_stacks_file_naming_a_missing_file_is_an_error(project, tmp_path):
    # A typo here used to give an empty registry: the run went to the built-in local stack.
    write(project / "stacks.toml", "[stacks.near]\nexecutor = 'echo'\n")
    missing = tmp_path / "conf" / "stcks.toml"
    with pytest.raises(ConfigError) as info:
        load(project, FLOWYML_STACKS_FILE=str(missing))
    message = str(info.value)
    assert message.startswith(f"FLOWYML_STACKS_FILE={missing}: no such file")
    assert "flowyml stack add" in message and "unset FLOWYML_STACKS_FILE" in message
    assert "\n" not in message
    assert not missing.exists() and not missing.parent.exists()


def test_flowyml_stacks_file_relative_path_is_shown_resolved(project):
    with pytest.raises(ConfigError) as info:
        load(project, FLOWYML_STACKS_FILE="conf/stacks.toml")
    assert str(info.value).startswith(f"FLOWYML_STACKS_FILE=conf/stacks.toml ({project / 'conf' / 'stacks.toml'}): no such file")


def test_flowyml_stacks_file_naming_a_directory_is_an_error(project, tmp_path):
    with pytest.raises(ConfigError, match=r"^FLOWYML_STACKS_FILE=.*: is a directory, not a stacks.toml file"):
        load(project, FLOWYML_STACKS_FILE=str(tmp_path))


def test_empty_flowyml_stacks_file_means_unset(project):
    write(project / "stacks.toml", "[stacks.near]\nexecutor = 'echo'\n")
    assert "near" in load(project, FLOWYML_STACKS_FILE="").stacks


def test_the_kit_project_fixture_sets_flowyml_stacks_file_to_a_file_that_exists(flowyml_project, run_cli):
    # Plugin authors' tests may run the CLI before adding a stack: the variable must not name a missing file.
    assert flowyml_project.stacks_file.is_file()
    out = run_cli("stack", "list", "--json", cwd=flowyml_project.path)
    assert out.returncode == 0, out.stderr
    assert [r["name"] for r in json.loads(out.stdout)["stacks"]] == ["local"]


def test_a_missing_stacks_file_may_be_allowed_for_writing(project, tmp_path):
    registry = StackRegistry.load({"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "FLOWYML_STACKS_FILE": str(tmp_path / "new.toml")},
                                  cwd=project, missing_ok=True)
    assert registry.project_file.path == tmp_path / "new.toml" and not registry.project_file.exists
    assert list(registry.stacks) == ["local"]


class TestPrecedence:
    """explicit > FLOWYML_STACK > `stack use` > default > local, each level on its own."""

    def test_explicit_name_beats_everything(self, project):
        write(project / "stacks.toml", FOUR)
        write(project / ".flowyml" / "active-stack", "c\n")
        registry = load(project, FLOWYML_STACK="b")
        assert registry.active("a") == ("a", "--stack") and prefix(registry, "a") == "A"

    def test_environment_beats_saved_choice_and_default(self, project):
        write(project / "stacks.toml", FOUR)
        write(project / ".flowyml" / "active-stack", "c\n")
        registry = load(project, FLOWYML_STACK="b")
        assert registry.active() == ("b", "FLOWYML_STACK") and prefix(registry) == "B"

    def test_saved_choice_beats_default(self, project):
        write(project / "stacks.toml", FOUR)
        write(project / ".flowyml" / "active-stack", "c\n")
        registry = load(project)
        assert registry.active()[0] == "c" and "stack use" in registry.active()[1] and prefix(registry) == "C"

    def test_default_beats_local(self, project):
        write(project / "stacks.toml", FOUR)
        registry = load(project)
        assert registry.active()[0] == "d" and prefix(registry) == "D"

    def test_local_is_the_last_resort(self, project):
        write(project / "stacks.toml", FOUR.replace('default = "d"', ""))
        assert load(project).active() == ("local", "fallback")

    def test_empty_environment_variable_is_ignored(self, project):
        write(project / "stacks.toml", FOUR)
        assert load(project, FLOWYML_STACK="").active()[0] == "d"


def test_resolve_builds_components_from_the_plugin(project):
    write(project / "stacks.toml", """
        [stacks.s]
        executor = { flavor = "echo", prefix = "P", repeat = 3 }
        cache_store = { flavor = "memory", max_entries = 5 }
        router = "null"
    """)
    stack = load(project).resolve("s")
    assert isinstance(stack.executor, EchoExecutor) and stack.executor.config.repeat == 3
    assert isinstance(stack.cache_store, MemoryCacheStore) and stack.cache_store.config.max_entries == 5
    assert stack.router is not None and stack.artifact_store is None
    assert "P" not in repr(stack) or "ResolvedStack" in repr(stack)


def test_all_problems_of_a_stack_are_reported_at_once(project):
    stacks = write(project / "stacks.toml", """
        [stacks.s]
        executor = { flavor = "echo", colour = "red", repeat = "many" }
        cache_store = { flavor = "memory", max_entries = -1.5, token = "${env:FLOWYML_TEST_NOPE}" }
        artifact_store = { flavor = "gcs-ish" }

        [stacks.fine]
        executor = "echo"
    """)
    registry = load(project)
    with pytest.raises(ConfigError) as info:
        registry.resolve("s")
    lines = str(info.value).splitlines()
    assert lines[0] == "stack 's' cannot be used:"
    where = f"{stacks}: stack 's'"
    expected = [
        f"{where}, executor 'echo': unknown option 'colour'",
        f"{where}, executor 'echo': option 'repeat'",
        f"{where}, cache_store 'memory': option 'token': environment variable FLOWYML_TEST_NOPE is not set",
        f"{where}, cache_store 'memory': unknown option 'token'",
        f"{where}, artifact_store 'gcs-ish': unknown artifact store flavor 'gcs-ish'",
    ]
    for fragment in expected:
        assert any(fragment in line for line in lines), (fragment, lines)
    assert registry.resolve("fine").executor.config.prefix == "echo"  # other stacks still work


def test_attrs_validators_of_the_config_are_reported(project):
    write(project / "stacks.toml", '[stacks.s]\nexecutor = { flavor = "echo", repeat = -2 }\n')
    with pytest.raises(ConfigError, match=r"executor 'echo': 'repeat' must be >= 0: -2"):
        load(project).resolve("s")


def test_flavor_without_config_refuses_options(project):
    write(project / "stacks.toml", '[stacks.s]\nexecutor = "echo"\nrouter = { flavor = "null", rules = 1 }\n')
    with pytest.raises(ConfigError, match="router 'null': this flavor takes no options, got rules"):
        load(project).resolve("s")


def test_unknown_stack_lists_known_ones(project):
    write(project / "stacks.toml", FOUR)
    with pytest.raises(ConfigError, match=r"unknown stack 'zz' \(known: a, b, c, d, local; read from: .*stacks.toml\)"):
        load(project).resolve("zz")
    with pytest.raises(ConfigError, match="unknown stack 'gone', chosen by FLOWYML_STACK"):
        load(project, FLOWYML_STACK="gone").resolve()
    write(project / ".flowyml" / "active-stack", "removed-later\n")
    with pytest.raises(ConfigError, match=r"unknown stack 'removed-later', chosen by flowyml stack use \(.*active-stack\)"):
        load(project).resolve()


# -- environment references and secrets -----------------------------------------------------
SECRET_STACK = """
    [stacks.s]
    executor = { flavor = "echo", prefix = "${env:ECHO_PREFIX}-x", token = "${env:ECHO_TOKEN}" }
"""


def test_env_references_are_resolved_when_the_stack_is_resolved(project):
    write(project / "stacks.toml", SECRET_STACK)
    registry = load(project, ECHO_PREFIX="pre", ECHO_TOKEN="s3cr3t-value")
    assert "s3cr3t" not in repr(registry.stacks["s"].declared())
    executor = registry.resolve("s").executor
    assert executor.config.prefix == "pre-x" and executor.config.token == "s3cr3t-value"
    assert "s3cr3t" not in repr(executor.config)  # secret_field keeps it out of reprs
    assert executor.to_dict()["token"] == "****"


def test_missing_env_variable_is_named(project):
    write(project / "stacks.toml", SECRET_STACK)
    with pytest.raises(ConfigError) as info:
        load(project, ECHO_PREFIX="p").resolve("s")
    assert "environment variable ECHO_TOKEN is not set" in str(info.value)
    assert "option 'token'" in str(info.value)


def test_secrets_are_scrubbed_in_their_escaped_forms_too():
    import json

    from flowyml_core.stacks import scrub

    secret = 'sk\\9"q\'z'  # a backslash and both quotes: repr() and JSON escape them differently
    for shown in (secret, repr(secret), json.dumps(secret), str([secret])):
        message = scrub(f"login with {shown} refused", [secret])
        assert "sk" not in message and "9" not in message and "****" in message, message


@pytest.mark.parametrize("how", ["env", "literal"])
def test_secrets_are_scrubbed_from_construction_errors(project, how):
    token = '"${env:ECHO_TOKEN}"' if how == "env" else '"explode"'
    write(project / "stacks.toml", f'[stacks.s]\nexecutor = {{ flavor = "echo", token = {token} }}\n')
    with pytest.raises(ConfigError) as info:
        load(project, ECHO_TOKEN="explode").resolve("s")
    message = str(info.value)
    assert "could not be created: ValueError: token '****' was refused" in message
    assert "explode" not in message


def test_secret_env_values_are_scrubbed_from_validate_problems(project):
    write(project / "stacks.toml", SECRET_STACK)
    stack = load(project, ECHO_PREFIX="p", ECHO_TOKEN="bad-token-123").resolve("s")
    problems = stack.validate()
    assert problems and "is not accepted" in problems[0]
    assert "bad-token-123" not in "\n".join(problems)


def test_secret_values_are_hidden_in_type_errors(project):
    write(project / "stacks.toml", '[stacks.s]\nexecutor = { flavor = "echo", repeat = "${env:ECHO_REPEAT}" }\n')
    with pytest.raises(ConfigError) as info:
        load(project, ECHO_REPEAT="hunter2").resolve("s")
    assert "option 'repeat' is invalid" in str(info.value) and "hunter2" not in str(info.value)


def test_nothing_is_written_when_resolving(project):
    path = write(project / "stacks.toml", SECRET_STACK)
    before = path.read_bytes()
    load(project, ECHO_PREFIX="p", ECHO_TOKEN="t0k3n").resolve("s")
    assert path.read_bytes() == before
    assert sorted(p.name for p in project.iterdir()) == ["stacks.toml"]


# -- bad files ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, fragment",
    [
        ('[stacks.a]\nexecutor = "echo\n', "invalid TOML: Illegal character '\\n' (at line 2, column 17)"),
        ('[stacks.a]\nexecutor = 3\n', "stack 'a': executor must be a flavor name or a table with 'flavor', not int"),
        ('[stacks.a]\nexecutor = { prefix = "x" }\n', "stack 'a': executor needs a 'flavor' string"),
        ('[stacks.a]\nexecutor = ""\n', "stack 'a': executor flavor is empty"),
        ('[stacks.a]\ncache_store = "memory"\n', "stack 'a': no executor"),
        ('[stacks.a]\nexecutor = "echo"\nexecuter = "echo"\n', "stack 'a': unknown key 'executer'"),
        ('stacks = "a"\n', "'stacks' must be a table of stacks"),
        ('stacks = { a = 3 }\n', "stack 'a': must be a table like [stacks.a], not int"),
        ('default = 5\n', "default must be a stack name (a string)"),
        ('defualt = "a"\n', "unknown top-level key 'defualt' (allowed: default, stacks)"),
        ('default = "nope"\n[stacks.a]\nexecutor = "echo"\n', "default = 'nope' names no stack (known: a, local)"),
        ('[stacks.a]\nexecutor = "echo"\ndescription = 1\n', "stack 'a': description must be a string"),
    ],
)
def test_bad_files_are_one_clear_error(project, text, fragment):
    path = project / "stacks.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(project)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)
    assert isinstance(info.value, FlowymlError)


def test_non_utf8_file_is_a_clear_error(project):
    (project / "stacks.toml").write_bytes(b"[stacks.a]\nexecutor = \"\xff\"\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(project)


def test_pipeline_run_stack_argument_beats_environment_saved_choice_and_default(project, monkeypatch, capfd):
    from flowyml_core import Pipeline, step

    write(project / "stacks.toml", FOUR)
    write(project / ".flowyml" / "active-stack", "c\n")

    @step
    def hello():
        return "hi"

    pipeline = Pipeline("p", [hello])
    monkeypatch.setenv("FLOWYML_STACK", "b")
    assert pipeline.run(stack="a").success
    assert capfd.readouterr().out == "[A] hello\n"
    assert pipeline.run().success  # no argument: FLOWYML_STACK
    assert capfd.readouterr().out == "[B] hello\n"
    monkeypatch.delenv("FLOWYML_STACK")
    pipeline.run()
    assert capfd.readouterr().out == "[C] hello\n"
    (project / ".flowyml" / "active-stack").unlink()
    pipeline.run()
    assert capfd.readouterr().out == "[D] hello\n"
