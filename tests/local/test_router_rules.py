"""The ``type`` router's rules: matching along the MRO without imports, templates, config errors."""

from __future__ import annotations

import collections
import sys
import subprocess

import pytest

from flowyml_local.router import TypeRouter, TypeRouterConfig, TypeRule, template_problems


class Base:
    pass


class Child(Base):
    pass


class Grandchild(Child):
    pass


def _router(*rules: TypeRule) -> TypeRouter:
    return TypeRouter(TypeRouterConfig(rules=list(rules)))


def test_most_specific_class_wins_whatever_the_rule_order() -> None:
    base = TypeRule(type="Base", store="/s/base")
    child = TypeRule(type=f"{__name__}.Child", store="/s/child")
    router = _router(base, child)
    assert router.match(Grandchild()) is child
    assert router.match(Child()) is child
    assert router.match(Base()) is base
    assert router.match(object()) is None
    assert router.match(3) is None


def test_first_rule_wins_for_the_same_class() -> None:
    first, second = TypeRule(type="dict", store="/a"), TypeRule(type="builtins.dict", store="/b")
    router = _router(first, second)
    assert router.match({}) is first
    assert router.match(collections.OrderedDict()) is first  # a dict subclass, matched through its MRO


def test_builtin_base_class_catches_everything() -> None:
    router = _router(TypeRule(type="object", store="/everything"))
    assert router.match(3).store == "/everything"
    assert router.match(None).store == "/everything"


def test_dotted_alias_resolved_through_imported_modules() -> None:
    # collections.OrderedDict's class lives in the C module but is exported by 'collections'.
    assert collections.OrderedDict.__module__ == "collections"
    router = _router(TypeRule(type="collections.abc.Mapping", store="/abc"), TypeRule(type="json.JSONDecodeError", store="/j"))
    import json

    assert router.match(json.JSONDecodeError("x", "doc", 0)).store == "/j"
    # an ABC is not in the MRO of dict (registered virtually): no match, by design
    assert router.match({}) is None


def test_numpy_alias_matches_when_numpy_is_in_use() -> None:
    numpy = pytest.importorskip("numpy")
    router = _router(TypeRule(type="numpy.ndarray", store="/arrays"), TypeRule(type="numpy.generic", store="/scalars"))
    assert router.match(numpy.zeros(3)).store == "/arrays"
    assert router.match(numpy.float64(1.0)).store == "/scalars"


def test_matching_imports_nothing() -> None:
    code = (
        "import sys\n"
        "from flowyml_local.router import TypeRouter, TypeRouterConfig, TypeRule\n"
        "r = TypeRouter(TypeRouterConfig(rules=[TypeRule(type='pandas.DataFrame', store='/x'),"
        " TypeRule(type='email.message.Message', store='/y')]))\n"
        "before = set(sys.modules)\n"
        "assert r.match({'a': 1}) is None\n"
        "new = sorted(set(sys.modules) - before)\n"
        "print(new)\n"
        "assert 'pandas' not in sys.modules and 'email.message' not in sys.modules, new\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_render_fills_the_template() -> None:
    rule = TypeRule(type="dict", store="/s", path="{project_name}/models/{step_name}-{name}/{run_id}")
    assert TypeRouter.render(rule, project_name="p", run_id="r1", step_name="train", name="model") == "p/models/train-model/r1"
    assert TypeRule(type="dict", store="/s").path == "{run_id}/{step_name}/{name}"


@pytest.mark.parametrize("bad", ["..", "a/b", ".", "", "a\\b"])
def test_render_refuses_names_that_leave_the_store(bad: str) -> None:
    rule = TypeRule(type="dict", store="/s")
    with pytest.raises(ValueError, match="cannot be used in an artifact path"):
        TypeRouter.render(rule, project_name="p", run_id="r", step_name=bad, name="n")


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{run_id}/{step}/{name}", "unknown placeholder(s) {step}"),
        ("{run_id}/{step_name}", "must contain {name}"),
        ("/abs/{name}", "must be relative"),
        ("../{name}", "must not contain '..'"),
        ("{name", "is not a valid template"),
        ("", "non-empty"),
    ],
)
def test_bad_templates_are_refused(template: str, problem: str) -> None:
    assert problem in template_problems(template)
    with pytest.raises(ValueError, match="path"):
        TypeRule(type="dict", store="/s", path=template)


@pytest.mark.parametrize("bad_type", ["", "numpy.", "1abc", "a b", "numpy..ndarray"])
def test_bad_type_names_are_refused(bad_type: str) -> None:
    with pytest.raises(ValueError, match="class name or dotted path"):
        TypeRule(type=bad_type, store="/s")


def test_rules_from_stacks_toml_are_structured_and_checked(tmp_path, monkeypatch) -> None:
    from flowyml_core.errors import ConfigError
    from flowyml_core.stacks import StackRegistry

    monkeypatch.chdir(tmp_path)
    (tmp_path / "stacks.toml").write_text(
        """
[stacks.routed]
executor = "local"

[stacks.routed.router]
flavor = "type"

[[stacks.routed.router.rules]]
type = "numpy.ndarray"
store = "arrays"
path = "{project_name}/{run_id}/{step_name}/{name}"
materializer = "numpy"

[stacks.broken]
executor = "local"
router = { flavor = "type", rules = [ { type = "dict", store = "x", path = "{run}/{name}", colour = "red" } ] }
""",
        encoding="utf-8",
    )
    registry = StackRegistry.load()
    stack = registry.resolve("routed")
    assert isinstance(stack.router, TypeRouter)
    assert stack.router.rules == (TypeRule(type="numpy.ndarray", store="arrays", path="{project_name}/{run_id}/{step_name}/{name}", materializer="numpy"),)
    with pytest.raises(ConfigError) as info:
        registry.resolve("broken")
    message = str(info.value)
    assert "stack 'broken'" in message and "router 'type'" in message
    assert "colour" in message
