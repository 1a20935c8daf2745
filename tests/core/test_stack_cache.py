"""``Pipeline.run`` resolves its stack once per process; each thing the stack was built from invalidates it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowyml_core import Pipeline, step
from flowyml_core.errors import ConfigError
from flowyml_core.plugins import reset_registry
from flowyml_core.stacks import cached_stack, forget_cached_stacks
from tests.core.helpers import write

TWO = """
    default = "a"
    [stacks.a]
    executor = { flavor = "echo", prefix = "A" }
    [stacks.b]
    executor = { flavor = "echo", prefix = "B" }
"""


@pytest.fixture(autouse=True)
def no_cached_stacks():
    forget_cached_stacks()
    yield
    forget_cached_stacks()


def prefix(name: str | None = None) -> str:
    return cached_stack(name).executor.config.prefix


def test_nothing_changed_gives_the_same_components(project: Path) -> None:
    write(project / "stacks.toml", TWO)
    first = cached_stack("a")
    assert cached_stack("a") is first and cached_stack() is cached_stack()
    assert cached_stack("b") is not first and cached_stack("a") is first  # one entry per name asked for


def test_pipeline_run_reuses_the_stack_and_its_components(project: Path) -> None:
    write(project / "stacks.toml", """
        [stacks.mem]
        executor = "local"
        cache_store = "memory"
    """)

    @step(outputs=["y"])
    def one() -> int:
        return 1

    pipeline = Pipeline("cached-stack", steps=[one])
    first = pipeline.run(stack="mem")
    second = pipeline.run(stack="mem")
    assert first.success and not first.steps["one"].cached
    # The second run hit the in-memory cache store of the first: the same component.
    assert second.steps["one"].cached
    store = cached_stack("mem").cache_store
    assert store.hits == 1


def test_an_edited_project_file_is_read_again(project: Path) -> None:
    write(project / "stacks.toml", TWO)
    assert prefix("a") == "A"
    write(project / "stacks.toml", TWO.replace('prefix = "A"', 'prefix = "AA"'))
    assert prefix("a") == "AA"


def test_a_same_size_rewrite_is_seen_through_its_mtime(project: Path) -> None:
    path = write(project / "stacks.toml", TWO)
    assert prefix("a") == "A"
    before = path.stat()
    with open(path, "r+", encoding="utf-8") as fh:  # in place: same inode, same size
        text = fh.read()
        fh.seek(0)
        fh.write(text.replace('prefix = "A"', 'prefix = "Z"'))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    assert path.stat().st_size == before.st_size and path.stat().st_ino == before.st_ino
    assert prefix("a") == "Z"


def test_flowyml_stacks_file_is_followed(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(project / "stacks.toml", TWO)
    other = write(project / "other.toml", TWO.replace('prefix = "A"', 'prefix = "other"'))
    assert prefix("a") == "A"
    monkeypatch.setenv("FLOWYML_STACKS_FILE", str(other))
    assert prefix("a") == "other"
    monkeypatch.delenv("FLOWYML_STACKS_FILE")
    assert prefix("a") == "A"


def test_the_user_file_and_xdg_config_home_are_followed(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = Path(os.environ["XDG_CONFIG_HOME"]) / "flowyml" / "stacks.toml"
    write(user, '[stacks.mine]\nexecutor = { flavor = "echo", prefix = "user" }\n')
    assert prefix("mine") == "user"
    write(user, '[stacks.mine]\nexecutor = { flavor = "echo", prefix = "user, edited" }\n')
    assert prefix("mine") == "user, edited"
    elsewhere = project.parent / "other-xdg"
    write(elsewhere / "flowyml" / "stacks.toml", '[stacks.mine]\nexecutor = { flavor = "echo", prefix = "xdg2" }\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(elsewhere))
    assert prefix("mine") == "xdg2"


def test_the_active_stack_file_and_flowyml_stack_are_followed(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(project / "stacks.toml", TWO)
    assert prefix() == "A"  # the default
    write(project / ".flowyml" / "active-stack", "b\n")  # what `flowyml stack use b` writes
    assert prefix() == "B"
    monkeypatch.setenv("FLOWYML_STACK", "a")
    assert prefix() == "A"
    (project / ".flowyml" / "active-stack").unlink()
    monkeypatch.delenv("FLOWYML_STACK")
    assert prefix() == "A"


def test_what_does_not_choose_the_stack_does_not_rebuild_it(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A named stack ignores the active choice; FLOWYML_STACK overrides the active-stack file.

    Each file the check reads is an ``os.stat`` on every run, and each one lets
    the history's writer thread take the GIL from the run: only what can
    change the answer is read.
    """
    write(project / "stacks.toml", TWO)
    named = cached_stack("a")
    monkeypatch.setenv("FLOWYML_STACK", "b")
    chosen = cached_stack()
    assert prefix() == "B"
    write(project / ".flowyml" / "active-stack", "a\n")  # what `flowyml stack use a` writes
    assert cached_stack("a") is named and cached_stack() is chosen  # the file chose neither
    monkeypatch.setenv("FLOWYML_STACK", "a")
    assert cached_stack("a") is named and prefix() == "A"  # nor did the variable choose the named one
    monkeypatch.delenv("FLOWYML_STACK")
    assert prefix() == "A"  # now the file chooses


def test_env_references_are_read_again_when_their_value_changes(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(project / "stacks.toml", """
        [stacks.e]
        executor = { flavor = "echo", prefix = "${env:CACHE_TEST_PREFIX}", token = "${env:CACHE_TEST_TOKEN}" }
    """)
    monkeypatch.setenv("CACHE_TEST_PREFIX", "one")
    monkeypatch.setenv("CACHE_TEST_TOKEN", "t1")
    first = cached_stack("e")
    assert first.executor.config.prefix == "one"
    monkeypatch.setenv("UNRELATED_VARIABLE", "x")
    assert cached_stack("e") is first
    monkeypatch.setenv("CACHE_TEST_TOKEN", "t2")
    assert cached_stack("e").executor.config.token == "t2"
    monkeypatch.setenv("CACHE_TEST_PREFIX", "two")
    assert prefix("e") == "two"
    monkeypatch.delenv("CACHE_TEST_PREFIX")
    with pytest.raises(ConfigError, match="CACHE_TEST_PREFIX is not set"):
        cached_stack("e")


def test_another_working_directory_gets_its_own_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Local store paths are relative to the current directory: the same stacks.toml elsewhere is another stack."""
    first_dir, second_dir = tmp_path / "one", tmp_path / "two"
    for folder in (first_dir, second_dir):
        folder.mkdir()
    monkeypatch.chdir(first_dir)
    first = cached_stack("local")
    assert first.artifact_store.root.startswith(str(first_dir))
    monkeypatch.chdir(second_dir)
    second = cached_stack("local")
    assert second is not first and second.artifact_store.root.startswith(str(second_dir))


def test_a_reset_plugin_registry_builds_the_stack_again(project: Path) -> None:
    write(project / "stacks.toml", TWO)
    first = cached_stack("a")
    reset_registry()
    second = cached_stack("a")
    assert second is not first and second.executor is not first.executor


def test_errors_are_not_cached(project: Path) -> None:
    path = write(project / "stacks.toml", "[stacks.a]\nexecutor = { flavor = \"echo\", prefx = \"A\" }\n")
    with pytest.raises(ConfigError, match="unknown option 'prefx'"):
        cached_stack("a")
    path.write_text('[stacks.a]\nexecutor = { flavor = "echo", prefix = "fixed" }\n', encoding="utf-8")
    assert prefix("a") == "fixed"
