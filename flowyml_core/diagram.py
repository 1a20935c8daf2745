"""A pipeline as a diagram: Mermaid (renders in Markdown on GitHub/GitLab) or DOT (Graphviz).

Both formats draw the same graph, taken from the built pipeline rather than
from the code: a node per step in topological order, an edge per producer →
consumer pair labelled with the assets handed over, the steps of an execution
group inside a box (as the executors will run them: a group that has to be
split is drawn as its parts, ``train-1`` and ``train-2``), and the assets no
step consumes as the pipeline's outputs. The same pipeline always gives the
same text, so a diagram kept in a repository changes only when the pipeline
does.

Names come from user code and may hold anything (quotes, ``<>``, ``#``,
backslashes, newlines): node ids are generated (``s0``, ``s1``...) and every
name appears only inside a quoted label, escaped for the format.

With an overlay (a run's step statuses), each step shows its status, and its
duration when known, in its label and in its colour, so the diagram reads the
same printed in grey.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Union

from flowyml_core.display import format_duration, printable

if TYPE_CHECKING:  # pragma: no cover
    from flowyml_core.pipeline import Pipeline

FORMATS = ("mermaid", "dot")
DIRECTIONS = ("TD", "LR")
#: Statuses that have a colour of their own; any other status is drawn neutral.
STATUSES = ("completed", "cached", "skipped", "failed", "running", "pending")
#: What a step the overlay does not mention is shown as.
NOT_RUN = "not run"

# status -> (fill, stroke, text colour, dashed border)
_STYLES: dict[str, tuple[str, str, str, bool]] = {
    "completed": ("#d3f9d8", "#2b8a3e", "#000000", False),
    "cached": ("#d0ebff", "#1971c2", "#000000", False),
    "skipped": ("#f1f3f5", "#868e96", "#495057", True),
    "failed": ("#ffe3e3", "#c92a2a", "#000000", False),
    "running": ("#fff3bf", "#e67700", "#000000", False),
    "pending": ("#f3f0ff", "#7950f2", "#000000", True),
    NOT_RUN: ("#ffffff", "#ced4da", "#868e96", True),
    "other": ("#f8f9fa", "#495057", "#000000", False),
}


@dataclass(frozen=True)
class StepState:
    """A step's state in a run: a status (see :data:`STATUSES`) and its duration in seconds, if known."""

    status: str
    duration: float | None = None


Overlay = Mapping[str, Union[StepState, str]]


@dataclass
class _Graph:
    """What both renderers draw, computed once from the built pipeline."""

    title: str
    ids: dict[str, str]  # step name -> its node id
    # Execution units in order: (group label or None for a lone step, its steps in execution order).
    units: list[tuple[str | None, list[str]]]
    edges: list[tuple[str, str, list[str]]]  # (producer, consumer, assets handed over)
    outputs: list[tuple[str, str]]  # (producer, asset) for each asset no step consumes
    states: dict[str, StepState] | None


def render(
    pipeline: Pipeline,
    fmt: str = "mermaid",
    *,
    direction: str = "TD",
    overlay: Overlay | None = None,
    title: str | None = None,
) -> str:
    """The diagram of ``pipeline`` as text in ``fmt`` (one of :data:`FORMATS`).

    ``overlay`` maps step names to a :class:`StepState` or a bare status;
    when given, steps it does not name are shown as ``not run``, and names
    that are not steps of the pipeline are ignored (the caller decides
    whether that deserves a word). ``title`` defaults to the pipeline's name.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown diagram format {fmt!r}; use one of {', '.join(FORMATS)}")
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; use one of {', '.join(DIRECTIONS)}")
    graph = _graph(pipeline, overlay)
    if title is not None:
        graph.title = title
    return _write(graph, _Mermaid() if fmt == "mermaid" else _Dot(), direction)


def _graph(pipeline: Pipeline, overlay: Overlay | None) -> _Graph:
    from flowyml_core.grouping import StepGroup, unit_steps

    units: list[tuple[str | None, list[str]]] = []
    for unit in pipeline.execution_units():  # builds the pipeline: an invalid one raises here
        group = unit.group_name if isinstance(unit, StepGroup) else None
        units.append((group, [s.name for s in unit_steps(unit)]))
    dag = pipeline.dag
    assert dag is not None
    order = [name for _, names in units for name in names]
    position = {name: i for i, name in enumerate(order)}
    ids = {name: f"s{i}" for i, name in enumerate(order)}

    edges: list[tuple[str, str, list[str]]] = []
    consumed: set[str] = set()
    for consumer in order:
        by_producer: dict[str, list[str]] = {}
        for asset in dag.steps[consumer].inputs:
            consumed.add(asset)
            assets = by_producer.setdefault(dag.producers[asset], [])
            if asset not in assets:
                assets.append(asset)
        # Producers in topological order, so an edge list reads top to bottom.
        for producer in sorted(by_producer, key=position.__getitem__):
            edges.append((producer, consumer, by_producer[producer]))
    outputs = [(name, asset) for name in order for asset in dag.steps[name].outputs if asset not in consumed]

    states = None
    if overlay is not None:
        states = {}
        for name in order:
            state = overlay.get(name)
            if state is None:
                states[name] = StepState(NOT_RUN)
            else:
                states[name] = state if isinstance(state, StepState) else StepState(str(state))
    return _Graph(pipeline.name, ids, units, edges, outputs, states)


def _style_key(state: StepState) -> str:
    return state.status if state.status in _STYLES else "other"


def _state_line(state: StepState) -> str:
    if state.duration is None or state.status == "skipped":  # a skipped step took no time worth a number
        return state.status
    return f"{state.status} · {format_duration(state.duration)}"


# -- Mermaid --------------------------------------------------------------------------
_MERMAID_ESCAPES = {"#": "#35;", '"': "#quot;", "&": "#38;", "<": "#lt;", ">": "#gt;", "`": "#96;"}


def mermaid_text(text: str) -> str:
    """``text`` for inside a quoted Mermaid label.

    Mermaid reads ``#name;`` and ``#123;`` as entity codes, so ``#`` itself is
    escaped first; ``<>&`` would otherwise be read as HTML by renderers that
    allow it, and a leading backtick starts a Markdown string.
    """
    return "".join(_MERMAID_ESCAPES.get(c, c) for c in printable(text))


class _Mermaid:
    """Mermaid ``flowchart`` syntax for each part of the graph (see :func:`_write`)."""

    group_end = "end"

    def head(self, graph: _Graph, direction: str) -> list[str]:
        # Front matter is YAML; a JSON string is a valid YAML double-quoted scalar.
        return ["---", f"title: {json.dumps(printable(graph.title), ensure_ascii=False)}", "---",
                f"flowchart {direction}"]

    def node(self, graph: _Graph, name: str) -> str:
        label = mermaid_text(name)
        if graph.states is not None:
            label += "<br>" + mermaid_text(_state_line(graph.states[name]))
        return f'{graph.ids[name]}["{label}"]'

    def group_start(self, number: int, group: str) -> list[str]:
        return [f'subgraph g{number}["{mermaid_text(group)}"]']

    def output(self, number: int, asset: str) -> str:
        return f'o{number}[/"{mermaid_text(asset)}"/]'

    def edge(self, producer: str, consumer: str, assets: list[str]) -> str:
        return f'{producer} -->|"{mermaid_text(", ".join(assets))}"| {consumer}'

    def output_edge(self, producer: str, number: int) -> str:
        return f"{producer} --> o{number}"

    def tail(self, graph: _Graph) -> list[str]:
        return _mermaid_classes(graph) if graph.states is not None else []


def _mermaid_class(key: str) -> str:
    return key.replace(" ", "")  # "not run" -> notrun


def _mermaid_classes(graph: _Graph) -> list[str]:
    assert graph.states is not None
    members: dict[str, list[str]] = {}
    for name, state in graph.states.items():
        members.setdefault(_style_key(state), []).append(graph.ids[name])
    lines = []
    for key in _STYLES:  # a fixed order, whatever order the steps are in
        if key not in members:
            continue
        fill, stroke, color, dashed = _STYLES[key]
        dash = ",stroke-dasharray:5 3" if dashed else ""
        lines.append(f"    classDef {_mermaid_class(key)} fill:{fill},stroke:{stroke},color:{color}{dash}")
    for key in _STYLES:
        if key in members:
            lines.append(f"    class {','.join(members[key])} {_mermaid_class(key)}")
    return lines


# -- DOT ------------------------------------------------------------------------------
def dot_string(text: str) -> str:
    """``text`` as a quoted DOT string that Graphviz shows exactly as written.

    Inside quotes Graphviz reads ``\\"``, and also escapes of its own in
    labels (``\\N`` is the node's id, ``\\l`` a line break) and HTML entities
    (``&amp;``): backslashes and ampersands are escaped so that a name shows as
    it is. Line breaks are the caller's, written as ``\\n`` after escaping.
    """
    text = printable(text).replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;")
    return f'"{text}"'


class _Dot:
    """Graphviz DOT syntax for each part of the graph (see :func:`_write`)."""

    group_end = "}"

    def head(self, graph: _Graph, direction: str) -> list[str]:
        rankdir = "TB" if direction == "TD" else direction
        return [
            f"digraph {dot_string(graph.title)} {{",
            f'    graph [rankdir={rankdir}, label={dot_string(graph.title)}, labelloc=t, fontname="Helvetica"];',
            '    node [shape=box, style="rounded", fontname="Helvetica"];',
            '    edge [fontname="Helvetica", fontsize=10];',
        ]

    def node(self, graph: _Graph, name: str) -> str:
        node_id = f'"{graph.ids[name]}"'
        if graph.states is None:
            return f"{node_id} [label={dot_string(name)}];"
        state = graph.states[name]
        label = dot_string(name)[:-1] + "\\n" + dot_string(_state_line(state))[1:]
        fill, stroke, color, dashed = _STYLES[_style_key(state)]
        style = "rounded,filled,dashed" if dashed else "rounded,filled"
        width = ", penwidth=2" if state.status == "failed" else ""
        return (f'{node_id} [label={label}, style="{style}", fillcolor="{fill}", color="{stroke}", '
                f'fontcolor="{color}"{width}];')

    def group_start(self, number: int, group: str) -> list[str]:
        return [f'subgraph "cluster_{number}" {{', f'    label={dot_string(group)}; style="dashed"; color="#868e96";']

    def output(self, number: int, asset: str) -> str:
        return f'"o{number}" [label={dot_string(asset)}, shape=note, style=""];'

    def edge(self, producer: str, consumer: str, assets: list[str]) -> str:
        return f'"{producer}" -> "{consumer}" [label={dot_string(", ".join(assets))}];'

    def output_edge(self, producer: str, number: int) -> str:
        return f'"{producer}" -> "o{number}";'

    def tail(self, graph: _Graph) -> list[str]:
        return ["}"]


# -- both -----------------------------------------------------------------------------
def _write(graph: _Graph, syntax: _Mermaid | _Dot, direction: str) -> str:
    """The graph in one walk, whatever the format: nodes (groups around theirs), outputs, edges."""
    lines = syntax.head(graph, direction)
    indent = "    "
    groups = 0
    for group, names in graph.units:
        if group is None:
            lines.extend(indent + syntax.node(graph, n) for n in names)
            continue
        lines.extend(indent + line for line in syntax.group_start(groups, group))
        lines.extend(2 * indent + syntax.node(graph, n) for n in names)
        lines.append(indent + syntax.group_end)
        groups += 1
    lines.extend(indent + syntax.output(i, asset) for i, (_, asset) in enumerate(graph.outputs))
    lines.extend(indent + syntax.edge(graph.ids[p], graph.ids[c], assets) for p, c, assets in graph.edges)
    lines.extend(indent + syntax.output_edge(graph.ids[p], i) for i, (p, _) in enumerate(graph.outputs))
    lines.extend(syntax.tail(graph))
    return "\n".join(lines) + "\n"
