"""``flowyml show``: pipelines as Mermaid and Graphviz diagrams, with a run's statuses on top.

DOT output is checked by the real Graphviz: ``dot -Tsvg`` must accept it
without a word on stderr and draw every name, and ``dot -Tjson`` says which
nodes, edges and clusters it read. Mermaid output is read back line by line,
its labels decoded the way Mermaid decodes entity codes (``#quot;``, ``#35;``).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from flowyml_core import Pipeline, step
from flowyml_core.diagram import NOT_RUN, StepState, render
from tests.core.helpers import write
from tests.core.test_import_budget import HEAVY, probe

# Names a user may well write, and names meant to break a diagram.
NASTY = [
    'say "hi"',
    "ünïcødé → 模型",
    "a <b> & c",
    "x-y_z.v2",
    "#quot; #35; #lt;",
    "back\\slash \\N \\n",
    "`tick`",
    "[brackets] (parens) {braces} |pipe|",
    "&amp; literal",
    "end",
    "%% not a comment",
]


def nasty_pipeline() -> Pipeline:
    """A chain of steps named (and producing assets named) like :data:`NASTY`; the middle ones in one group."""
    steps = []
    previous: str | None = None
    for i, name in enumerate(NASTY):
        asset = f"asset {name}"
        group = "grp \"quoted\" <g>" if 3 <= i <= 5 else None
        steps.append(step(name=name, inputs=[previous] if previous else [], outputs=[asset],
                          execution_group=group)(lambda **kw: 1))
        previous = asset
    return Pipeline('nasty "pipeline" <1>', steps)


def diamond() -> Pipeline:
    """load -> (clean, stats) -> train, with train in group "fit" together with evaluate; two final outputs."""

    @step(outputs=["features", "labels"])
    def load():
        return 1, 2

    @step(inputs=["features"], outputs=["clean"])
    def clean(features):
        return features

    @step(inputs=["features", "labels"], outputs=["stats"])
    def stats(features, labels):
        return 0

    @step(inputs=["clean", "stats", "labels"], outputs=["model"], execution_group="fit")
    def train(clean, stats, labels):
        return 0

    @step(inputs=["model", "labels"], outputs=["metrics", "report"], execution_group="fit")
    def evaluate(model, labels):
        return 0, 0

    # Added out of order on purpose: the diagram follows the graph, not the list.
    return Pipeline("diamond", [evaluate, train, stats, clean, load])


# -- reading Mermaid back -------------------------------------------------------------
NODE = re.compile(r'\s*(s\d+)\["([^"]*)"\]')
OUTPUT = re.compile(r'\s*(o\d+)\[/"([^"]*)"/\]')
EDGE = re.compile(r'\s*(s\d+) -->\|"([^"]*)"\| (s\d+)')
OUTPUT_EDGE = re.compile(r"\s*(s\d+) --> (o\d+)")
SUBGRAPH = re.compile(r'\s*subgraph (g\d+)\["([^"]*)"\]')
CLASS = re.compile(r"\s*class ([\w,]+) (\w+)")
CLASSDEF = re.compile(r"\s*classDef (\w+) (.+)")


def mermaid_decode(text: str) -> str:
    """A label as Mermaid shows it: ``#name;`` and ``#123;`` are entity codes, ``<br>`` a line break."""
    text = re.sub(r"#(\w+);", lambda m: html.unescape(f"&#{m[1]};" if m[1].isdigit() else f"&{m[1]};"), text)
    return text.replace("<br>", "\n")


def read_mermaid(text: str) -> dict:
    """Nodes, output nodes, edges, subgraphs and classes of a diagram; any other line fails the test."""
    lines = text.splitlines()
    assert lines[:3] == ["---", lines[1], "---"] and lines[1].startswith("title: ")
    assert re.fullmatch(r"flowchart (TD|LR)", lines[3]), lines[3]
    graph: dict = {"title": json.loads(lines[1][len("title: "):]), "direction": lines[3].split()[1],
                   "nodes": {}, "order": [], "outputs": {}, "edges": [], "output_edges": [],
                   "subgraphs": {}, "classes": {}, "classdefs": {}}
    group = None
    for line in lines[4:]:
        if m := SUBGRAPH.fullmatch(line):
            assert group is None, "nested subgraph"
            group = mermaid_decode(m[2])
            graph["subgraphs"][group] = []
        elif line.strip() == "end":
            assert group is not None
            group = None
        elif m := NODE.fullmatch(line):
            graph["nodes"][m[1]] = mermaid_decode(m[2])
            graph["order"].append(m[1])
            if group is not None:
                graph["subgraphs"][group].append(m[1])
        elif m := OUTPUT.fullmatch(line):
            graph["outputs"][m[1]] = mermaid_decode(m[2])
        elif m := EDGE.fullmatch(line):
            graph["edges"].append((m[1], mermaid_decode(m[2]), m[3]))
        elif m := OUTPUT_EDGE.fullmatch(line):
            graph["output_edges"].append((m[1], m[2]))
        elif m := CLASSDEF.fullmatch(line):
            graph["classdefs"][m[1]] = m[2]
        elif m := CLASS.fullmatch(line):
            for node in m[1].split(","):
                assert node not in graph["classes"], f"{node} in two classes"
                graph["classes"][node] = m[2]
        else:
            pytest.fail(f"unexpected line in the Mermaid output: {line!r}\n{text}")
    assert group is None, "subgraph not closed"
    return graph


def names_by_id(graph: dict) -> dict[str, str]:
    """Node id -> step name (the first line of the label)."""
    return {node: label.split("\n")[0] for node, label in graph["nodes"].items()}


# -- Graphviz -------------------------------------------------------------------------
def graphviz(dot_text: str, fmt: str) -> str:
    """``dot -T<fmt>`` on the text: it must be read without an error or a warning."""
    dot = shutil.which("dot")
    if dot is None:
        pytest.skip("graphviz 'dot' not installed: apt-get install graphviz (see .ci/system-packages.sh)")
    done = subprocess.run([dot, f"-T{fmt}"], input=dot_text, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", f"dot -T{fmt} failed ({done.returncode}): {done.stderr}\n{dot_text}"
    return done.stdout


def svg_texts(dot_text: str) -> list[str]:
    root = ET.fromstring(graphviz(dot_text, "svg"))
    return [el.text or "" for el in root.iter("{http://www.w3.org/2000/svg}text")]


def read_dot(dot_text: str) -> dict:
    """What Graphviz read: nodes (by name) with their drawn text lines and attributes, edges, clusters."""
    data = json.loads(graphviz(dot_text, "json"))
    nodes, clusters, by_gvid = {}, {}, {}
    for obj in data.get("objects", []):
        drawn = [op["text"] for op in obj.get("_ldraw_", []) if op["op"] == "T"]
        if "nodes" in obj or obj["name"].startswith("cluster"):
            clusters[obj["name"]] = {"label": drawn, "nodes": obj.get("nodes", [])}
        else:
            nodes[obj["name"]] = {"text": drawn, "attrs": obj}
            by_gvid[obj["_gvid"]] = obj["name"]
    edges = [
        (by_gvid[e["tail"]], [op["text"] for op in e.get("_ldraw_", []) if op["op"] == "T"], by_gvid[e["head"]])
        for e in data.get("edges", [])
    ]
    for cluster in clusters.values():
        cluster["nodes"] = [by_gvid[g] for g in cluster["nodes"]]
    return {"title": [op["text"] for op in data.get("_ldraw_", []) if op["op"] == "T"], "nodes": nodes,
            "edges": edges, "clusters": clusters}


# -- the graph ------------------------------------------------------------------------
def test_mermaid_has_every_step_edge_group_and_output_in_topological_order():
    pipeline = diamond()
    graph = read_mermaid(render(pipeline))
    names = names_by_id(graph)
    # The pipeline's topological order: ties go to the step added first (stats before clean).
    assert [names[n] for n in graph["order"]] == ["load", "stats", "clean", "train", "evaluate"]
    assert graph["title"] == "diamond" and graph["direction"] == "TD"
    edges = {(names[a], label, names[b]) for a, label, b in graph["edges"]}
    assert edges == {
        ("load", "features", "clean"),
        ("load", "features, labels", "stats"),  # two assets of one producer: one edge naming both
        ("load", "labels", "train"),
        ("clean", "clean", "train"),
        ("stats", "stats", "train"),
        ("load", "labels", "evaluate"),
        ("train", "model", "evaluate"),
    }
    assert len(graph["edges"]) == len(edges)
    assert {g: [names[n] for n in members] for g, members in graph["subgraphs"].items()} == {"fit": ["train", "evaluate"]}
    assert sorted((names[s], graph["outputs"][o]) for s, o in graph["output_edges"]) == [
        ("evaluate", "metrics"), ("evaluate", "report")]
    assert graph["classes"] == {} and graph["classdefs"] == {}  # no run: no colours


def test_dot_is_read_by_graphviz_with_the_same_graph():
    dot_text = render(diamond(), "dot", direction="LR")
    assert dot_text.startswith('digraph "diamond" {')
    graph = read_dot(dot_text)
    names = {node: info["text"][0] for node, info in graph["nodes"].items()}
    steps = {n for n in names if n.startswith("s")}
    assert sorted(names[n] for n in steps) == ["clean", "evaluate", "load", "stats", "train"]
    edges = {(names[a], tuple(label), names[b]) for a, label, b in graph["edges"]}
    assert edges == {
        ("load", ("features",), "clean"),
        ("load", ("features, labels",), "stats"),
        ("load", ("labels",), "train"),
        ("clean", ("clean",), "train"),
        ("stats", ("stats",), "train"),
        ("load", ("labels",), "evaluate"),
        ("train", ("model",), "evaluate"),
        ("evaluate", (), "metrics"),
        ("evaluate", (), "report"),
    }
    assert [(c["label"], sorted(names[n] for n in c["nodes"])) for c in graph["clusters"].values()] == [
        (["fit"], ["evaluate", "train"])]
    assert graph["title"] == ["diamond"]
    assert 'rankdir=LR' in dot_text


def test_the_same_pipeline_gives_the_same_text():
    for fmt in ("mermaid", "dot"):
        assert render(diamond(), fmt) == render(diamond(), fmt)


def test_a_group_split_by_an_outside_step_is_drawn_as_its_parts():
    """a (group g) -> b (no group) -> c (group g): g cannot run as one unit, and is not drawn as one."""

    @step(outputs=["x"], execution_group="g")
    def a():
        return 1

    @step(inputs=["x"], outputs=["y"])
    def b(x):
        return x

    @step(inputs=["y"], outputs=["z"], execution_group="g")
    def c(y):
        return y

    pipeline = Pipeline("split", [a, b, c])
    graph = read_mermaid(render(pipeline))
    names = names_by_id(graph)
    assert {g: [names[n] for n in members] for g, members in graph["subgraphs"].items()} == {"g-1": ["a"], "g-2": ["c"]}
    clusters = read_dot(render(pipeline, "dot"))["clusters"]
    assert sorted(c["label"][0] for c in clusters.values()) == ["g-1", "g-2"]


# -- names that could break the text --------------------------------------------------
def test_mermaid_labels_keep_any_name():
    text = render(nasty_pipeline())
    graph = read_mermaid(text)  # fails on any line a name broke
    names = names_by_id(graph)
    assert [names[n] for n in graph["order"]] == NASTY
    assert graph["title"] == 'nasty "pipeline" <1>'
    assert [label for _, label, _ in graph["edges"]] == [f"asset {n}" for n in NASTY[:-1]]
    assert list(graph["outputs"].values()) == [f"asset {NASTY[-1]}"]
    assert list(graph["subgraphs"]) == ['grp "quoted" <g>']
    # Nothing a browser would read as markup, and no entity it would decode, reaches the text unescaped.
    assert "<b>" not in text and "&" not in text and "`" not in text


def test_graphviz_draws_any_name_as_written():
    dot_text = render(nasty_pipeline(), "dot")
    texts = svg_texts(dot_text)
    for name in NASTY:
        assert name in texts, name
        assert f"asset {name}" in texts, name
    assert 'grp "quoted" <g>' in texts
    assert 'nasty "pipeline" <1>' in texts
    graph = read_dot(dot_text)
    assert [graph["nodes"][n]["text"] for n in sorted(graph["nodes"], key=lambda n: int(n[1:])) if n.startswith("s")] \
        == [[n] for n in NASTY]


def test_a_newline_in_a_name_cannot_forge_a_line():
    pipeline = Pipeline("two\nlines", [step(name="a\nclassDef x fill:red", outputs=["o\n}"])(lambda: 1)])
    graph = read_mermaid(render(pipeline))
    assert list(graph["nodes"].values()) == ["a\\nclassDef x fill:red"]
    assert graph["classdefs"] == {}
    assert "a\\nclassDef x fill:red" in svg_texts(render(pipeline, "dot"))


# -- a run on top ---------------------------------------------------------------------
OVERLAY = {
    "load": StepState("completed", 1.5),
    "clean": StepState("cached", 0.002),
    "stats": "failed",
    "train": StepState("reticulating", None),  # a status no colour is defined for
    "gone": "completed",  # a step the pipeline no longer has
}


def test_mermaid_overlay_colours_and_labels_every_step():
    graph = read_mermaid(render(diamond(), overlay=OVERLAY))
    names = names_by_id(graph)
    labels = {names[n]: label for n, label in graph["nodes"].items()}
    assert labels == {
        "load": "load\ncompleted · 1.500s",
        "clean": "clean\ncached · 0.002s",
        "stats": "stats\nfailed",
        "train": "train\nreticulating",
        "evaluate": f"evaluate\n{NOT_RUN}",
    }
    classes = {names[n]: c for n, c in graph["classes"].items()}
    assert classes == {"load": "completed", "clean": "cached", "stats": "failed", "train": "other",
                       "evaluate": "notrun"}
    assert set(graph["classdefs"]) == set(classes.values())  # every class used is defined, and only those
    fills = {c: re.search(r"fill:(#\w+)", style)[1] for c, style in graph["classdefs"].items()}
    assert len(set(fills.values())) == len(fills)  # each status its own colour


def test_every_status_has_its_own_colour_in_dot():
    statuses = ["completed", "cached", "skipped", "failed", "running", "pending"]
    steps = [step(name=s, outputs=[f"out {s}"])(lambda: 1) for s in statuses + ["absent", "odd"]]
    overlay = {s: StepState(s, 2.0) for s in statuses} | {"odd": "weird"}
    graph = read_dot(render(Pipeline("all", steps), "dot", overlay=overlay))
    nodes = {info["text"][0]: info for info in graph["nodes"].values() if info["attrs"].get("shape") != "note"}
    for s in statuses:
        assert nodes[s]["text"] == [s, s if s == "skipped" else f"{s} · 2.000s"]  # skipped: no time worth a number
    assert nodes["absent"]["text"] == ["absent", NOT_RUN]
    assert nodes["odd"]["text"] == ["odd", "weird"]
    fills = {name: info["attrs"]["fillcolor"] for name, info in nodes.items()}
    assert len(set(fills.values())) == len(fills), fills
    assert "filled" in nodes["failed"]["attrs"]["style"] and nodes["failed"]["attrs"]["penwidth"] == "2"


def test_no_overlay_means_no_status():
    graph = read_dot(render(diamond(), "dot"))
    assert all(len(info["text"]) == 1 and "fillcolor" not in info["attrs"] for info in graph["nodes"].values())


# -- the command ----------------------------------------------------------------------
PIPELINE = """
    from flowyml_core import Pipeline, step

    @step(outputs=["numbers"])
    def load(n: int = 3):
        return list(range(n))

    @step(inputs=["numbers"], outputs=["total"], execution_group="sums")
    def total(numbers, fail: bool = False):
        if fail:
            raise RuntimeError("asked to fail")
        return sum(numbers)

    @step(inputs=["total"], outputs=["report"], execution_group="sums")
    def report(total):
        return f"total={total}"

    pipeline = Pipeline("show-demo", [load, total, report])

    @step(outputs=["x"])
    def lone():
        return 1

    other = Pipeline("other-demo", [lone])
"""


@pytest.fixture
def demo(project: Path) -> Path:
    write(project / "pipe.py", PIPELINE)
    return project


def test_show_prints_mermaid_by_default_and_dot_on_request(demo, run_cli):
    out = run_cli("show", "pipe.py:pipeline", cwd=demo)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    graph = read_mermaid(out.stdout)
    names = names_by_id(graph)
    assert [names[n] for n in graph["order"]] == ["load", "total", "report"]
    assert {g: [names[n] for n in m] for g, m in graph["subgraphs"].items()} == {"sums": ["total", "report"]}

    out = run_cli("show", "pipe.py:pipeline", "--format", "dot", "--direction", "LR", cwd=demo)
    assert out.returncode == 0, out.stderr
    texts = svg_texts(out.stdout)
    assert {"load", "total", "report", "numbers", "sums", "show-demo"} <= set(texts)
    assert not (demo / ".flowyml" / "runs").exists()  # showing runs nothing


def test_show_writes_a_file_when_asked(demo, run_cli):
    target = demo / "docs" / "pipeline.dot"
    write(target, "old")
    out = run_cli("show", "pipe.py:pipeline", "--format", "dot", "--output", str(target), cwd=demo)
    assert out.returncode == 0, out.stderr
    assert "pipeline.dot" in out.stdout and "digraph" not in out.stdout
    assert "total" in svg_texts(target.read_text(encoding="utf-8"))
    assert [p.name for p in target.parent.iterdir()] == ["pipeline.dot"]  # no temporary file left

    out = run_cli("show", "pipe.py:pipeline", "--output", str(demo / "docs"), cwd=demo)
    assert out.returncode == 1 and "is a directory" in out.stderr


@pytest.mark.parametrize("target, fragment", [
    ("pipe.py:missing", "no attribute 'missing'"),
    ("nope.py:pipeline", "does not exist"),
    ("pipe.py:load", "a step, not a pipeline"),
    ("pipe", "not MODULE_OR_FILE:PIPELINE"),
])
def test_a_broken_target_is_one_line(demo, run_cli, target, fragment):
    out = run_cli("show", target, cwd=demo)
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.startswith("error: ") and fragment in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_a_broken_pipeline_is_one_line(project, run_cli):
    write(project / "loop.py", """
        from flowyml_core import Pipeline, step

        @step(inputs=["b"], outputs=["a"])
        def first(b):
            return b

        @step(inputs=["a"], outputs=["b"])
        def second(a):
            return a

        pipeline = Pipeline("loop", [first, second])
    """)
    out = run_cli("show", "loop.py:pipeline", cwd=project)
    assert out.returncode == 1 and out.stdout == ""
    assert "the steps form a cycle: first -> second -> first" in out.stderr or \
        "the steps form a cycle: second -> first -> second" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_an_unknown_format_is_a_usage_error(demo, run_cli):
    out = run_cli("show", "pipe.py:pipeline", "--format", "svg", cwd=demo)
    assert out.returncode == 2
    assert "invalid choice: 'svg'" in out.stderr and out.stdout == ""


def flowyml_run(run_cli, demo: Path, run_id: str, *params: str) -> None:
    args = [a for p in params for a in ("--param", p)]
    run_cli("run", "pipe.py:pipeline", "--run-id", run_id, *args, cwd=demo)
    # The run's history is what `show --run` reads: make sure the run left one.
    listed = run_cli("runs", "show", run_id, "--json", cwd=demo)
    assert listed.returncode == 0, listed.stderr


def overlay_of(run_cli, demo: Path, run: str, fmt: str = "mermaid") -> dict[str, tuple[str, str]]:
    """Step name -> (its status line, its colour class or fill) as ``flowyml show --run`` draws them."""
    out = run_cli("show", "pipe.py:pipeline", "--run", run, "--format", fmt, cwd=demo)
    assert out.returncode == 0, out.stderr
    if fmt == "mermaid":
        graph = read_mermaid(out.stdout)
        assert graph["title"].startswith("show-demo (run ")
        return {label.split("\n")[0]: (label.split("\n")[1], graph["classes"][n]) for n, label in graph["nodes"].items()}
    graph = read_dot(out.stdout)
    return {info["text"][0]: (info["text"][1], info["attrs"]["fillcolor"])
            for info in graph["nodes"].values() if len(info["text"]) == 2}


def test_show_run_colours_a_failed_then_a_cached_run(demo, run_cli):
    flowyml_run(run_cli, demo, "failing-run", "fail=true")
    flowyml_run(run_cli, demo, "good-run")
    flowyml_run(run_cli, demo, "cached-run")

    failed = overlay_of(run_cli, demo, "failing")  # the start of an id is enough
    assert {name: cls for name, (_, cls) in failed.items()} == {"load": "completed", "total": "failed",
                                                                "report": "skipped"}
    assert re.fullmatch(r"completed · [\d.]+s", failed["load"][0]) and failed["total"][0].startswith("failed")

    good = overlay_of(run_cli, demo, "good-run")
    assert {name: cls for name, (_, cls) in good.items()} == {"load": "cached", "total": "completed",
                                                              "report": "completed"}

    cached = overlay_of(run_cli, demo, "cached-run", fmt="dot")
    assert {line.split(" ")[0] for line, _ in cached.values()} == {"cached"}
    assert set(cached) == {"load", "total", "report"}
    assert len({fill for _, fill in cached.values()}) == 1
    failed_dot = overlay_of(run_cli, demo, "failing-run", fmt="dot")
    assert len({fill for _, fill in failed_dot.values()}) == 3  # completed, failed, skipped: three colours


def test_show_run_of_another_pipeline_names_both(demo, run_cli):
    flowyml_run(run_cli, demo, "demo-run")
    out = run_cli("show", "pipe.py:other", "--run", "demo-run", cwd=demo)
    assert out.returncode == 1 and out.stdout == ""
    assert "'show-demo'" in out.stderr and "'other-demo'" in out.stderr and "demo-run" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_show_run_unknown_id(demo, run_cli):
    out = run_cli("show", "pipe.py:pipeline", "--run", "nosuchrun", cwd=demo)
    assert out.returncode == 1 and out.stdout == ""
    assert "nosuchrun" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_show_run_of_a_pipeline_that_changed_since(demo, run_cli):
    flowyml_run(run_cli, demo, "before-change")
    write(demo / "pipe.py", PIPELINE.replace("report(total)", "summary(total)").replace("total, report]", "total, summary]"))
    out = run_cli("show", "pipe.py:pipeline", "--run", "before-change", cwd=demo)
    assert out.returncode == 0, out.stderr
    graph = read_mermaid(out.stdout)
    statuses = {label.split("\n")[0]: graph["classes"][n] for n, label in graph["nodes"].items()}
    assert statuses == {"load": "completed", "total": "completed", "summary": "notrun"}
    assert f"summary\n{NOT_RUN}" in graph["nodes"].values()
    assert "'report'" in out.stderr and "no longer has" in out.stderr


@pytest.mark.parametrize("args", [["show", "pipe.py:pipeline"], ["show", "pipe.py:pipeline", "--format", "dot"]])
def test_show_imports_no_cloud_sdk(demo, args):
    result = probe(*args, cwd=demo)
    assert result["code"] == 0
    assert result["heavy"] == []
    assert not [m for m in result["modules"] if m.startswith(("flowyml_vertex", "flowyml_gcs", "flowyml_dask",
                                                               "flowyml_docker", "pluggy"))]
