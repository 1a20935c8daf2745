"""The step graph: errors that name the steps, deterministic order, execution units."""

from __future__ import annotations

import random

import pytest

from flowyml_core import Pipeline, ResourceConfig, Step, StepGroup, get_execution_units, step
from flowyml_core.dag import DAG
from flowyml_core.errors import FlowymlError, PipelineDefinitionError
from flowyml_core.grouping import unit_name, unit_steps


def s(name, inputs=(), outputs=(), group=None, resources=None):
    return Step(func=lambda **kw: None, name=name, inputs=list(inputs), outputs=list(outputs),
                execution_group=group, resources=resources)


def names(units):
    return [unit_name(u) for u in units]


def test_cycle_error_shows_the_path():
    steps = [s("start", outputs=["seed"]), s("a", ["seed", "c_out"], ["a_out"]), s("b", ["a_out"], ["b_out"]),
             s("c", ["b_out"], ["c_out"])]
    with pytest.raises(PipelineDefinitionError) as info:
        Pipeline("p", steps).build()
    message = str(info.value)
    assert isinstance(info.value, FlowymlError)
    assert "cycle" in message
    # One closed path through exactly the three cyclic steps, in data-flow direction.
    path = message.split("cycle: ")[1].split(" -> ")
    assert path[0] == path[-1] and sorted(path[:-1]) == ["a", "b", "c"]
    for x, y in zip(path, path[1:]):
        assert {"a": "b", "b": "c", "c": "a"}[x] == y
    assert "start" not in path


def test_two_step_cycle_and_self_loop():
    with pytest.raises(PipelineDefinitionError, match=r"x -> y -> x|y -> x -> y"):
        DAG([s("x", ["yo"], ["xo"]), s("y", ["xo"], ["yo"])])
    with pytest.raises(PipelineDefinitionError, match="'selfish' consumes its own output 'o'"):
        DAG([s("selfish", ["o"], ["o"])])


def test_input_nobody_produces_names_step_and_asset():
    with pytest.raises(PipelineDefinitionError) as info:
        DAG([s("load", outputs=["raw"]), s("train", ["features"], ["model"])])
    assert "step 'train' needs input 'features' but no step produces it" in str(info.value)
    assert "raw" in str(info.value)  # what does exist, to spot the typo


def test_two_producers_names_both_steps():
    with pytest.raises(PipelineDefinitionError, match="asset 'data' is produced by both step 'a' and step 'b'"):
        DAG([s("a", outputs=["data"]), s("b", outputs=["data"])])


def test_every_problem_is_reported_at_once():
    with pytest.raises(PipelineDefinitionError) as info:
        DAG([s("a", outputs=["d"]), s("b", outputs=["d"]), s("c", ["nope"]), s("a")])
    text = str(info.value)
    assert "two steps are named 'a'" in text and "produced by both" in text and "'nope'" in text


def test_topological_order_is_deterministic_and_follows_insertion_order():
    steps = [s("load", outputs=["raw"]), s("report"), s("clean", ["raw"], ["clean"]),
             s("stats", ["raw"], ["stats"]), s("train", ["clean", "stats"], ["model"])]
    order = [x.name for x in DAG(steps).topological_sort()]
    assert order == ["load", "report", "clean", "stats", "train"]
    # Same steps added in another order: dependencies still respected, ties by insertion.
    for seed in range(20):
        shuffled = steps[:]
        random.Random(seed).shuffle(shuffled)
        dag = DAG(shuffled)
        got = dag.order
        assert got == DAG(shuffled).order  # deterministic
        for name in got:
            for dep in dag.get_dependencies(name):
                assert got.index(dep) < got.index(name)
        independent = [n for n in got if not dag.get_dependencies(n)]
        assert independent == [x.name for x in shuffled if not x.inputs]


def test_dependencies_and_dependents():
    dag = DAG([s("a", outputs=["x", "y"]), s("b", ["x", "y"], ["z"]), s("c", ["z", "x"])])
    assert dag.get_dependencies("b") == ["a"]
    assert dag.get_dependencies("c") == ["b", "a"]
    assert dag.get_dependents("a") == ["b", "c"]


def test_pipeline_add_step_rebuilds_and_accepts_plain_functions():
    p = Pipeline("p")
    p.add_step(s("a", outputs=["x"]))
    assert [x.name for x in p.build().dag.topological_sort()] == ["a"]

    def plain():
        return 1

    p.add_step(plain)
    assert [x.name for x in p.build().dag.topological_sort()] == ["a", "plain"]
    with pytest.raises(TypeError):
        p.add_step(3)


# -- execution units ---------------------------------------------------------------
def test_no_groups_means_steps_in_order():
    dag = DAG([s("a", outputs=["x"]), s("b", ["x"])])
    units = get_execution_units(dag, list(dag.steps.values()))
    assert all(isinstance(u, Step) for u in units) and names(units) == ["a", "b"]


def test_group_members_are_kept_together_and_resources_merged_by_maximum():
    steps = [
        s("load", outputs=["raw"]),
        s("prep1", ["raw"], ["p1"], group="prep", resources=ResourceConfig(cpu="500m", memory="4Gi", disk_size="10Gi")),
        s("other", ["raw"], ["o"]),
        s("prep2", ["p1"], ["p2"], group="prep", resources=ResourceConfig(cpu="2", memory="512Mi", gpu_count=1)),
        s("prep3", ["p2"], ["p3"], group="prep"),
        s("train", ["p3", "o"]),
    ]
    units = get_execution_units(DAG(steps), steps)
    assert names(units) == ["load", "prep", "other", "train"]
    group = units[1]
    assert isinstance(group, StepGroup)
    assert group.group_name == "prep" and group.execution_order == ["prep1", "prep2", "prep3"]
    assert [x.name for x in unit_steps(group)] == ["prep1", "prep2", "prep3"]
    r = group.aggregated_resources
    assert (r.cpu, r.memory, r.gpu_count, r.disk_size) == ("2", "4Gi", 1, "10Gi")
    assert r.cpu_cores == 2.0 and r.memory_bytes == 4 * 2**30


def test_group_is_split_when_an_outside_step_sits_between_members():
    steps = [
        s("a", outputs=["x"], group="g"),
        s("middle", ["x"], ["m"]),          # outside the group, needs a, needed by b
        s("b", ["m"], ["y"], group="g"),
        s("c", ["y"], ["z"], group="g"),
    ]
    units = get_execution_units(DAG(steps), steps)
    assert names(units) == ["g-1", "middle", "g-2"]
    assert units[0].execution_order == ["a"] and units[2].execution_order == ["b", "c"]


def test_group_is_not_split_by_an_independent_outside_step():
    steps = [
        s("a", outputs=["x"], group="g"),
        s("side", outputs=["m"]),           # independent of a: can run before the group
        s("b", ["x", "m"], ["y"], group="g"),
    ]
    units = get_execution_units(DAG(steps), steps)
    assert names(units) == ["side", "g"] or names(units) == ["g", "side"][::-1]
    (group,) = [u for u in units if isinstance(u, StepGroup)]
    assert group.execution_order == ["a", "b"]


def test_units_are_in_dependency_order_for_random_graphs():
    for seed in range(40):
        rng = random.Random(seed)
        steps = []
        for i in range(10):
            inputs = [f"o{j}" for j in range(i) if rng.random() < 0.3]
            steps.append(s(f"s{i}", inputs, [f"o{i}"], group=rng.choice([None, "g", "h"])))
        dag = DAG(steps)
        units = get_execution_units(dag, steps)
        assert units == get_execution_units(DAG(steps), steps) or names(units) == names(get_execution_units(DAG(steps), steps))
        position = {}
        for i, unit in enumerate(units):
            for member in unit_steps(unit):
                assert member.name not in position  # each step in exactly one unit
                position[member.name] = i
        assert set(position) == set(dag.steps)
        for unit in units:
            members = unit_steps(unit)
            for k, member in enumerate(members):
                for dep in dag.get_dependencies(member.name):
                    if position[dep] == position[member.name]:
                        assert [m.name for m in members].index(dep) < k
                    else:
                        assert position[dep] < position[member.name], (seed, names(units))


def test_pipeline_exposes_its_units():
    @step(outputs=["x"], execution_group="g")
    def a():
        return 1

    @step(inputs=["x"], execution_group="g")
    def b(x):
        return x

    units = Pipeline("p", [a, b]).execution_units()
    assert len(units) == 1 and units[0].step_names == ["a", "b"]


def test_interleaved_groups_do_not_wait_for_each_other():
    # g = {a, d}, h = {b, c}; c needs a, d needs b. Each group alone looks whole,
    # but contracted together they would wait for each other: one must split.
    steps = [
        s("a", outputs=["ao"], group="g"),
        s("b", outputs=["bo"], group="h"),
        s("c", ["ao"], ["co"], group="h"),
        s("d", ["bo"], ["do"], group="g"),
    ]
    units = get_execution_units(DAG(steps), steps)
    assert [(unit_name(u), [m.name for m in unit_steps(u)]) for u in units] == [
        ("g-1", ["a"]), ("h", ["b", "c"]), ("g-2", ["d"])
    ]
