"""Plugin discovery through real entry points, blocking, broken and conflicting plugins."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from flowyml_core import hookimpl
from flowyml_core.errors import PluginError
from flowyml_core.plugins import (
    ENTRY_POINT_GROUP,
    KNOWN_FLAVORS,
    Registry,
    get_registry,
    install_command,
    iter_entry_points,
    reset_registry,
)
from tests.core.helpers import env_with, pythonpath, write

PY = sys.executable

ECHO_STACKS = """
    [stacks.echo]
    executor = { flavor = "echo", prefix = "E" }
    cache_store = "memory"

    [stacks.dup]
    executor = "dup"
"""

DUP_PLUGIN = """
    from flowyml_core import hookimpl

    @hookimpl
    def register_executors(register):
        register("dup", "flowyml_testplugin.components:EchoExecutor")
"""


def plugins_json(run_cli, **env) -> dict:
    out = run_cli("plugins", "--json", env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def by_name(data: dict) -> dict:
    return {p["name"]: p for p in data["plugins"]}


def test_installed_test_plugin_is_listed_with_its_flavors(run_cli):
    data = plugins_json(run_cli)
    plugin = by_name(data)["testplugin"]
    assert plugin["distribution"] == "flowyml-testplugin" and plugin["version"] == "0.3.1"
    assert plugin["flavors"] == {"executor": ["echo"], "cache_store": ["memory"], "artifact_store": ["pickledir"],
                                 "router": ["null"]}
    assert plugin["error"] is None and plugin["blocked"] is False and plugin["api_version"] == "1.0"
    assert data["conflicts"] == []
    text = run_cli("plugins")
    assert text.returncode == 0
    assert "testplugin 0.3.1 (flowyml-testplugin)" in text.stdout and "executor: echo" in text.stdout


def test_our_scanner_agrees_with_importlib_metadata():
    ours = {(ep.name, ep.value, ep.distribution) for ep in iter_entry_points()}
    theirs = set()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        theirs.add((ep.name, ep.value, ep.dist.name.replace("_", "-").lower()))
    assert ("testplugin", "flowyml_testplugin.plugin", "flowyml-testplugin") in ours
    assert ours == theirs


def test_scanner_reads_a_bare_dist_info_like_importlib_metadata(make_plugin, plugin_site):
    make_plugin("extra", "X = 1\n", distribution="flowyml-extra", version="2.5")
    ours = [(ep.name, ep.value, ep.distribution, ep.version) for ep in iter_entry_points(path=[str(plugin_site)])]
    dists = list(metadata.distributions(path=[str(plugin_site)]))
    theirs = [(ep.name, ep.value, d.metadata["Name"], d.version) for d in dists for ep in d.entry_points
              if ep.group == ENTRY_POINT_GROUP]
    assert ours == theirs == [("extra", "extra_plugin", "flowyml-extra", "2.5")]


def test_entry_points_are_read_once_per_process(make_plugin, plugin_site, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_site))
    first = get_registry()
    assert "late" not in first.plugins
    make_plugin("late", "from flowyml_core import hookimpl\n")
    assert get_registry() is first and "late" not in get_registry().plugins
    reset_registry()
    assert "late" in get_registry().plugins


# -- FLOWYML_DISABLE_PLUGINS ---------------------------------------------------------------
PROBE = """
import json, sys
from flowyml_core.cli import main
rc = main(sys.argv[1:])
print("MODULES=" + json.dumps(sorted(m for m in sys.modules if m.startswith(("flowyml_testplugin", "marker_")))))
"""


def test_disabled_plugin_is_never_imported(make_plugin, plugin_site, tmp_path):
    marker = tmp_path / "imported"
    make_plugin("marker", f"open({str(marker)!r}, 'w').write('yes')\n", module="marker_plugin")
    env = env_with(PYTHONPATH=pythonpath(plugin_site), FLOWYML_DISABLE_PLUGINS="testplugin, marker")
    out = subprocess.run([PY, "-c", PROBE, "plugins", "--json"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    payload, modules = out.stdout.split("MODULES=")
    assert json.loads(modules) == []
    assert not marker.exists()
    plugins = by_name(json.loads(payload))
    assert plugins["testplugin"]["blocked"] and plugins["marker"]["blocked"]
    assert plugins["testplugin"]["flavors"] == {}
    assert not plugins["local"]["blocked"]

    # The control: without the variable both modules are imported.
    env.pop("FLOWYML_DISABLE_PLUGINS")
    out = subprocess.run([PY, "-c", PROBE, "plugins"], env=env, capture_output=True, text=True)
    assert "flowyml_testplugin.plugin" in out.stdout and "marker_plugin" in out.stdout and marker.exists()
    assert "[disabled by FLOWYML_DISABLE_PLUGINS]" not in out.stdout


def test_disabled_plugins_are_marked_in_text_output(run_cli):
    out = run_cli("plugins", env={"FLOWYML_DISABLE_PLUGINS": "testplugin"})
    assert out.returncode == 0
    assert "testplugin 0.3.1 (flowyml-testplugin) [disabled by FLOWYML_DISABLE_PLUGINS]" in out.stdout



def load_warnings(caplog, blocked: set[str], names=("local", "testplugin")) -> tuple[Registry, list[str]]:
    registry = Registry()
    eps = [ep for ep in iter_entry_points() if ep.name in names]
    with caplog.at_level(logging.WARNING, logger="flowyml.plugins"):
        registry.load_entry_points(eps, blocked=blocked)
    return registry, [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_unknown_names_in_flowyml_disable_plugins_give_one_warning(caplog):
    registry, warnings = load_warnings(caplog, {"testplugin", "tetsplugin", "nosuch"})
    assert warnings == [
        "FLOWYML_DISABLE_PLUGINS: no installed plugin is named 'nosuch' or 'tetsplugin', so they disable nothing "
        "(installed plugins: local, testplugin); use the names `flowyml plugins` lists"
    ]
    assert registry.plugins["testplugin"].blocked and registry.plugins["testplugin"].flavors == []
    assert not registry.plugins["local"].blocked and registry.flavor("executor", "local").plugin == "local"


def test_a_distribution_name_in_flowyml_disable_plugins_says_which_plugin_name_to_write(caplog):
    registry, warnings = load_warnings(caplog, {"flowyml-testplugin"})
    assert warnings == [
        "FLOWYML_DISABLE_PLUGINS: no installed plugin is named 'flowyml-testplugin', so it disables nothing "
        "(installed plugins: local, testplugin); use the names `flowyml plugins` lists: "
        "write 'testplugin' for the distribution flowyml-testplugin"
    ]
    assert not registry.plugins["testplugin"].blocked  # a warning, not a second way to name plugins


def test_known_names_in_flowyml_disable_plugins_give_no_warning(caplog):
    assert load_warnings(caplog, {"testplugin"})[1] == []
    assert load_warnings(caplog, {"tetsplugin"}, names=())[1] == [
        "FLOWYML_DISABLE_PLUGINS: no installed plugin is named 'tetsplugin', so it disables nothing "
        "(no plugins are installed); use the names `flowyml plugins` lists"
    ]


def test_unknown_disabled_name_through_the_cli_warns_and_breaks_nothing(run_cli, project):
    env = {"FLOWYML_DISABLE_PLUGINS": "tetsplugin, local"}
    out = run_cli("plugins", env=env)
    assert out.returncode == 0
    assert out.stderr.startswith(
        "WARNING flowyml.plugins: FLOWYML_DISABLE_PLUGINS: no installed plugin is named 'tetsplugin', "
        "so it disables nothing (installed plugins: "
    ) and out.stderr.count("\n") == 1, out.stderr
    assert "testplugin" in out.stderr.split("installed plugins: ")[1]
    assert "local 0.1.0 (flowyml-local) [disabled by FLOWYML_DISABLE_PLUGINS]" in out.stdout
    assert "testplugin 0.3.1 (flowyml-testplugin)\n" in out.stdout  # not disabled
    listed = run_cli("plugins", "--json", env=env)
    plugins = by_name(json.loads(listed.stdout))
    assert plugins["local"]["blocked"] and not plugins["testplugin"]["blocked"]
    write(project / "stacks.toml", ECHO_STACKS)
    valid = run_cli("stack", "validate", "echo", cwd=project, env=env)
    assert valid.returncode == 0 and "tetsplugin" in valid.stderr, valid.stderr


# -- broken plugins ----------------------------------------------------------------------------
def test_plugin_raising_at_import_is_reported_and_others_keep_working(make_plugin, plugin_site, run_cli, project):
    make_plugin("broken", "raise RuntimeError('kaboom at import')\n")
    make_plugin("missingdep", "import flowyml_no_such_module_xyz\n")
    env = {"PYTHONPATH": pythonpath(plugin_site)}
    data = plugins_json(run_cli, **env)
    plugins = by_name(data)
    assert plugins["broken"]["error"] == "import failed: RuntimeError: kaboom at import"
    assert "ModuleNotFoundError" in plugins["missingdep"]["error"]
    assert plugins["testplugin"]["error"] is None and plugins["testplugin"]["flavors"]["executor"] == ["echo"]
    text = run_cli("plugins", env=env)
    assert text.returncode == 0 and "ERROR: import failed: RuntimeError: kaboom at import" in text.stdout

    write(project / "stacks.toml", ECHO_STACKS)
    out = run_cli("stack", "validate", "echo", cwd=project, env=env)
    assert out.returncode == 0 and "stack echo is valid" in out.stdout, out.stderr


def test_broken_plugin_that_a_stack_needs_is_named(make_plugin, plugin_site, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_site))
    make_plugin("vertex", "raise ImportError('google.cloud is missing')\n", distribution="flowyml-vertex")
    registry = Registry()
    registry.load_entry_points(iter_entry_points(path=[str(plugin_site)]), blocked=set())
    with pytest.raises(PluginError, match="plugin 'vertex' failed to load: import failed: ImportError: google.cloud"):
        registry.flavor("executor", "vertex")


# -- duplicates --------------------------------------------------------------------------------
def test_duplicate_flavor_is_an_error_naming_both_and_other_stacks_keep_working(make_plugin, plugin_site, run_cli,
                                                                                project):
    make_plugin("alpha", DUP_PLUGIN)
    make_plugin("beta", DUP_PLUGIN)
    env = {"PYTHONPATH": pythonpath(plugin_site)}
    data = plugins_json(run_cli, **env)
    assert data["conflicts"] == [{"kind": "executor", "flavor": "dup", "plugins": ["alpha", "beta"]}]
    assert "CONFLICT: executor flavor 'dup' is registered by alpha and beta" in run_cli("plugins", env=env).stdout

    write(project / "stacks.toml", ECHO_STACKS)
    bad = run_cli("stack", "validate", "dup", cwd=project, env=env)
    assert bad.returncode == 1
    assert "'dup' is registered by several plugins: alpha and beta" in bad.stderr
    assert "FLOWYML_DISABLE_PLUGINS=beta" in bad.stderr
    good = run_cli("stack", "validate", "echo", cwd=project, env=env)
    assert good.returncode == 0, good.stderr
    # Disabling one of the two resolves the conflict.
    fixed = run_cli("stack", "validate", "dup", cwd=project, env={**env, "FLOWYML_DISABLE_PLUGINS": "beta"})
    assert fixed.returncode == 0, fixed.stderr


def test_duplicate_of_an_installed_flavor_names_both(make_plugin, plugin_site, monkeypatch):
    make_plugin("copycat", """
        from flowyml_core import hookimpl

        @hookimpl
        def register_executors(register):
            register("echo", "copycat_plugin:Nothing")
    """)
    monkeypatch.syspath_prepend(str(plugin_site))
    registry = get_registry()
    with pytest.raises(PluginError) as info:
        registry.flavor("executor", "echo")
    assert "copycat" in str(info.value) and "testplugin" in str(info.value)
    assert registry.flavor("cache_store", "memory").plugin == "testplugin"  # the rest still works


# -- hooks and registrations, in process -----------------------------------------------------------
class Observer:
    def __init__(self):
        self.seen = []

    @hookimpl
    def on_step_end(self, result):  # declares only what it uses
        self.seen.append(result)


def test_hooks_are_called_by_keyword_and_may_declare_fewer_arguments():
    registry = Registry()
    observer = Observer()
    info = registry.register(observer, "observer")
    assert info.error is None
    registry.hook.on_step_end(run="the run", result="the result")
    assert observer.seen == ["the result"]
    with pytest.raises(TypeError):
        registry.hook.on_step_end("the run", "the result")  # positional calls are refused by pluggy


def test_hookimpl_with_an_unknown_argument_or_hook_is_reported():
    class ExtraArg:
        @hookimpl
        def on_run_start(self, run, surprise):
            pass

    class Typo:
        @hookimpl
        def register_executor(self, register):  # missing "s"
            register("x", "a:b")

    registry = Registry()
    assert "invalid plugin" in registry.register(ExtraArg(), "extra").error
    assert "register_executor" in registry.register(Typo(), "typo").error
    assert registry.flavors["executor"] == {}
    # Rejected plugins are not left half-registered.
    assert registry.pm.get_plugin("extra") is None and registry.pm.get_plugin("typo") is None


def test_invalid_registrations_are_reported_and_valid_ones_kept():
    class Sloppy:
        @hookimpl
        def register_executors(self, register):
            register("bad name!", "mod:Cls")
            register("no-colon", "just_a_module")
            register("not-callable", 42)
            register("good", "flowyml_testplugin.components:EchoExecutor")

        @hookimpl
        def register_cache_stores(self, register):
            register("fine", "flowyml_testplugin.components:MemoryCacheStore", config="bad config path")

    registry = Registry()
    info = registry.register(Sloppy(), "sloppy")
    for fragment in ["'bad name!'", "'just_a_module' must be 'module:Name'", "'not-callable'", "config"]:
        assert fragment in info.error
    assert list(registry.flavors["executor"]) == ["good"]
    assert registry.flavors["cache_store"] == {}


def test_register_hook_that_raises_is_reported():
    class Raises:
        @hookimpl
        def register_routers(self, register):
            raise RuntimeError("no routers today")

    info = Registry().register(Raises(), "raises")
    assert info.error == "register_routers failed: RuntimeError: no routers today"


@pytest.mark.parametrize("declared, ok", [("1.0", True), ("1", False), ("1.7", False), ("2.0", False), (None, True)])
def test_api_version_compatibility(declared, ok):
    class Plugin:
        @hookimpl
        def register_executors(self, register):
            register("v", "flowyml_testplugin.components:EchoExecutor")

    plugin = Plugin()
    if declared is not None:
        plugin.FLOWYML_API_VERSION = declared
    registry = Registry()
    registry.register(plugin, "versioned")
    if ok:
        assert registry.flavor("executor", "v").plugin == "versioned"
    else:
        with pytest.raises(PluginError, match="versioned"):
            registry.flavor("executor", "v")



# -- a plugin written for another API takes no part --------------------------------------------------
class Participant:
    """A plugin that uses every hook; ``calls`` records each one flowyml makes."""

    def __init__(self, api_version: str, executor: str = "echo-too") -> None:
        self.FLOWYML_API_VERSION = api_version
        self.executor = executor
        self.calls: list[str] = []

    @hookimpl
    def register_executors(self, register):
        register(self.executor, "flowyml_testplugin.components:EchoExecutor",
                 config="flowyml_testplugin.components:EchoExecutorConfig")

    @hookimpl
    def register_materializers(self, register):
        self.calls.append("register_materializers")
        register(f"{self.executor}-ints", "flowyml_testplugin.components:EchoExecutor", types=("builtins.int",))

    @hookimpl
    def on_run_start(self, run):
        self.calls.append("on_run_start")

    @hookimpl
    def on_step_end(self, run, result):
        self.calls.append(f"on_step_end {result.step_name}")

    @hookimpl
    def on_run_end(self, run, result):
        self.calls.append("on_run_end")


def run_two_steps(project, registry: Registry, stack: str) -> None:
    from flowyml_core import Pipeline, step
    from flowyml_core.pipeline import run_on_stack
    from flowyml_core.stacks import StackRegistry

    @step(outputs=["n"])
    def one():
        return 1

    @step(inputs=["n"], outputs=["m"])
    def two(n):
        return n + 1

    write(project / "stacks.toml", f"[stacks.s]\nexecutor = {stack!r}\n")
    resolved = StackRegistry.load({"XDG_CONFIG_HOME": str(project / "xdg")}, cwd=project).resolve("s", registry=registry)
    result = run_on_stack(Pipeline("p", [one, two]), resolved, registry=registry)
    assert result.success and result.outputs["m"] == 2


def test_incompatible_plugin_hooks_are_not_called(project):
    registry = only_testplugin()
    future = Participant("2.0")
    current = Participant("1.0", executor="echo-now")  # the control: the same plugin, compatible
    future_info = registry.register(future, "future")
    registry.register(current, "current")
    run_two_steps(project, registry, "echo-now")
    assert current.calls == ["register_materializers", "on_run_start", "on_step_end one", "on_step_end two",
                             "on_run_end"]
    assert future.calls == []
    assert [m.plugin for m in registry.materializer_specs()] == ["current"]
    assert not registry.pm.is_registered(future)
    # Its flavors are still listed (so `flowyml plugins` shows what it would provide) and refused by name.
    assert future_info.flavors == [("executor", "echo-too")] and future_info.error is None
    with pytest.raises(PluginError, match="plugin 'future' providing executor flavor 'echo-too' cannot be used: written for "
                                          "flowyml plugin API 2.0"):
        registry.flavor("executor", "echo-too")


@pytest.mark.parametrize("future_first", [True, False])
def test_incompatible_plugin_does_not_conflict_with_a_compatible_one(future_first):
    registry = Registry()
    plugins = [("future", Participant("2.0", executor="shared")), ("current", Participant("1.0", executor="shared"))]
    for name, plugin in plugins if future_first else plugins[::-1]:
        registry.register(plugin, name)
    assert registry.conflicts == {}
    assert registry.flavor("executor", "shared").plugin == "current"


FUTURE_PLUGIN = """
    from flowyml_core import hookimpl

    FLOWYML_API_VERSION = "2.0"

    @hookimpl
    def register_executors(register):
        register("future-exec", "flowyml_testplugin.components:EchoExecutor")

    def _mark(event):
        with open({marker!r}, "a") as fh:
            fh.write(event + "\\n")

    @hookimpl
    def register_materializers(register):
        _mark("register_materializers")

    @hookimpl
    def on_run_start(run):
        _mark("on_run_start")

    @hookimpl
    def on_step_end(result):
        _mark("on_step_end")

    @hookimpl
    def on_run_end(run, result):
        _mark("on_run_end")
"""


def test_incompatible_plugin_takes_no_part_in_a_cli_run(make_plugin, plugin_site, run_cli, project, events, tmp_path):
    marker = tmp_path / "future-hooks.txt"
    make_plugin("future", FUTURE_PLUGIN.format(marker=str(marker)))
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(plugin_site), os.environ.get("PYTHONPATH")]))}
    write(project / "stacks.toml", ECHO_STACKS)
    write(project / "flow.py", """
        from flowyml_core import Pipeline, step

        @step(outputs=["n"])
        def one():
            return 1

        pipeline = Pipeline("p", [one])
    """)
    out = run_cli("run", "flow.py:pipeline", "--stack", "echo", cwd=project, env=env)
    assert out.returncode == 0, out.stderr
    assert [e["event"] for e in events()] == ["run_start", "step_end", "run_end"]  # the compatible plugin's hooks ran
    assert not marker.exists(), marker.read_text()

    listed = run_cli("plugins", env=env)
    assert listed.returncode == 0
    block = listed.stdout.split("future 1.0 (flowyml-future)\n", 1)[1].split("\n")
    assert block[0] == "  executor: future-exec"
    assert block[1] == (
        "  INCOMPATIBLE: written for flowyml plugin API 2.0, but this flowyml-core provides 1.0 (upgrade flowyml-core, "
        "or install a release of the plugin made for API 1.x); not used: its flavors are refused and its hooks "
        "are not called"
    )


# -- unknown / disabled flavors -------------------------------------------------------------------
def only_testplugin() -> Registry:
    registry = Registry()
    eps = [ep for ep in iter_entry_points() if ep.name == "testplugin"]
    registry.load_entry_points(eps, blocked=set())
    return registry


@pytest.mark.parametrize("kind, name", sorted(KNOWN_FLAVORS))
def test_known_flavor_not_installed_says_what_to_pip_install(kind, name):
    registry = only_testplugin()
    with pytest.raises(PluginError) as info:
        registry.flavor(kind, name)
    package = KNOWN_FLAVORS[(kind, name)]
    # Not on the package index: the hint is the command that installs it from a checkout's wheels.
    assert f"pip install {package} --find-links dist (in a flowyml checkout, after bash scripts/build-wheels.sh)" \
        in str(info.value)


def test_every_install_hint_names_a_command_that_works():
    """``pip install flowyml-X`` alone fails (flowyml is not on the package index): every hint adds --find-links dist.

    That the command works is checked by tests/kit/test_walkthrough.py, which runs it.
    """
    repo = Path(__file__).resolve().parents[2]
    texts = [*repo.glob("flowyml_core/**/*.py"), *repo.glob("flowyml_core/templates/**/*.tmpl"),
             *repo.glob("plugins/*/flowyml_*/**/*.py"), *repo.glob("plugins/*/README.md"),
             repo / "README.md", repo / "CONTRIBUTING.md"]
    bare = [
        f"{path.relative_to(repo)}: {match.group(0)}"
        for path in texts
        # Adjacent string literals on two lines are one message: join them first.
        for match in re.finditer(r"pip install flowyml-[\w\[\]'\"-]+( --find-links)?",
                                 re.sub(r"\"\s*\n\s*f?\"", "", path.read_text()))
        if not match.group(1)
    ]
    assert bare == []
    assert install_command("flowyml-dask").startswith("pip install flowyml-dask --find-links dist")
    assert install_command("flowyml-acme") == "pip install flowyml-acme"  # a third party's own package


def test_test_plugins_are_not_installed_in_the_development_venv(run_cli):
    """tests/plugins/* are visible to the core tests only (conftest.py), never listed by the venv's `flowyml plugins`."""
    venv = json.loads(run_cli("plugins", "--json", env={"PYTHONPATH": ""}).stdout)["plugins"]
    assert "testplugin" not in {p["name"] for p in venv} and "local" in {p["name"] for p in venv}
    here = json.loads(run_cli("plugins", "--json").stdout)["plugins"]
    assert "testplugin" in {p["name"] for p in here}


def test_unknown_flavor_lists_installed_ones():
    with pytest.raises(PluginError) as info:
        only_testplugin().flavor("executor", "kubeflow")
    message = str(info.value)
    assert "unknown executor flavor 'kubeflow'" in message and "installed: echo" in message


def test_blocked_plugin_is_named_only_when_it_may_provide_the_flavor():
    eps = [ep for ep in iter_entry_points() if ep.name in ("testplugin", "local")]
    registry = Registry()
    registry.load_entry_points(eps, blocked={"local"})
    with pytest.raises(PluginError, match="comes from plugin 'local', which FLOWYML_DISABLE_PLUGINS disables"):
        registry.flavor("executor", "local")
    # A known flavor of another package is not blamed on the disabled plugin.
    with pytest.raises(PluginError, match="pip install flowyml-vertex") as info:
        registry.flavor("executor", "vertex")
    assert "disables" not in str(info.value)


def test_class_objects_are_accepted_as_implementations():
    flavor = only_testplugin().flavor("router", "null")
    impl, config = flavor.load()
    assert impl.__name__ == "NullRouter" and config is None


def test_unknown_flavor_with_a_disabled_third_party_plugin_says_it_may_come_from_it():
    eps = [ep for ep in iter_entry_points() if ep.name in ("testplugin", "local")]
    registry = Registry()
    registry.load_entry_points(eps, blocked={"testplugin"})
    for flavor in ("echo", "kubeflow"):
        with pytest.raises(PluginError) as info:
            registry.flavor("executor", flavor)
        message = str(info.value)
        # We cannot know what a plugin we never imported provides: say so, do not assert it.
        assert f"unknown executor flavor {flavor!r}" in message, message
        assert "FLOWYML_DISABLE_PLUGINS disables testplugin, which may provide it" in message


def test_flavor_whose_implementation_cannot_be_loaded_is_a_plugin_error():
    class WrongName:
        @hookimpl
        def register_executors(self, register):
            register("typo", "flowyml_testplugin.components:EchoExecutr")
            register("raises", "flowyml_testplugin.explodes_on_import_xyz:Executor")

    registry = Registry()
    registry.register(WrongName(), "wrongname", distribution="flowyml-wrongname")
    with pytest.raises(PluginError) as info:
        registry.flavor("executor", "typo").load()
    assert "executor flavor 'typo' (plugin 'wrongname') cannot be imported" in str(info.value)
    assert "EchoExecutr" in str(info.value)
    with pytest.raises(PluginError, match="pip install flowyml-wrongname"):
        registry.flavor("executor", "raises").load()


def test_invalid_registrations_are_shown_by_flowyml_plugins(make_plugin, plugin_site, run_cli):
    make_plugin("sloppy", """
        from flowyml_core import hookimpl

        @hookimpl
        def register_executors(register):
            register("bad name", "x:Y")
            register("fine", "flowyml_testplugin.components:EchoExecutor")

        @hookimpl
        def register_cache_store(register):  # misspelt hook: the plugin is rejected as a whole
            pass
    """, module="sloppy_plugin")
    make_plugin("tidy", """
        from flowyml_core import hookimpl

        @hookimpl
        def register_executors(register):
            register("bad name", "x:Y")
            register("fine2", "flowyml_testplugin.components:EchoExecutor")
    """, module="tidy_plugin")
    plugins = by_name(plugins_json(run_cli, PYTHONPATH=pythonpath(plugin_site)))
    assert "register_cache_store" in plugins["sloppy"]["error"] and plugins["sloppy"]["flavors"] == {}
    assert "flavor name 'bad name' must be letters" in plugins["tidy"]["error"]
    assert plugins["tidy"]["flavors"] == {"executor": ["fine2"]}
    assert plugins["testplugin"]["error"] is None


def test_plugins_inside_a_zip_on_sys_path_are_found(tmp_path):
    import zipfile

    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zipped_plugin.py", "X = 1\n")
        zf.writestr("flowyml_zipped-1.2.dist-info/METADATA", "Metadata-Version: 2.1\nName: flowyml-zipped\nVersion: 1.2\n")
        zf.writestr("flowyml_zipped-1.2.dist-info/entry_points.txt", "[flowyml.plugins]\nzipped = zipped_plugin\n")
    found = [(ep.name, ep.value, ep.distribution, ep.version)
             for ep in iter_entry_points(path=[str(tmp_path / "missing.zip"), str(archive)])]
    assert found == [("zipped", "zipped_plugin", "flowyml-zipped", "1.2")]
