"""Mermaid flowcharts drawn as inline SVG, with no JavaScript library and no network.

The status page shows the topology; browsers cannot draw mermaid text by themselves and the
page must work offline, so this module parses the subset `kstream.describe.describe_mermaid`
writes and lays it out left to right:

* `flowchart LR`, `subgraph ID["title"]` … `end`;
* nodes `ID["label"]` (box), `ID(["label"])` (stadium: a topic), `ID[("label")]` (cylinder:
  a store), `ID[label]`;
* edges `A --> B` (arrow), `A --- B`, `A -.- B` and `A -.-> B` (dotted: a processor's store).

Layout: a node's column is its longest path from a node without inputs; each subgraph gets a
horizontal band (a topic joins the band of the sub-topology that reads it), nodes of one column
in one band stack downwards; edges are cubic curves from right to left sides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape

__all__ = ["parse_mermaid", "render_svg"]

CHAR_W = 7.0
NODE_H = 34.0
ROW_GAP = 16.0
COL_GAP = 56.0
BAND_GAP = 28.0
TITLE_H = 22.0
PAD = 14.0
MARGIN = 12.0

_NODE = re.compile(
    r'^(?P<id>[\w-]+)\s*(?:'
    r'\[\(\s*"?(?P<cyl>.*?)"?\s*\)\]'
    r'|\(\[\s*"?(?P<stadium>.*?)"?\s*\]\)'
    r'|\[\s*"(?P<boxq>.*?)"\s*\]'
    r'|\[(?P<box>[^\]]*)\]'
    r')$')
_EDGE = re.compile(r"^(?P<a>[\w-]+)\s*(?P<op>-->|---|-\.->|-\.-)\s*(?P<b>[\w-]+)$")
_SUBGRAPH = re.compile(r'^subgraph\s+(?P<id>[\w-]+)\s*(?:\[\s*"?(?P<title>.*?)"?\s*\])?$')


@dataclass
class Node:
    id: str
    label: str
    shape: str = "box"  # box | stadium | cylinder
    group: str | None = None


@dataclass
class Edge:
    a: str
    b: str
    dotted: bool
    arrow: bool


@dataclass
class Flowchart:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)  # id -> title, in order


def parse_mermaid(text: str) -> Flowchart:
    """The flowchart subset described in the module docstring; other lines are ignored."""
    chart = Flowchart()
    group: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("%%") or line.startswith(("flowchart", "graph")):
            continue
        if line == "end":
            group = None
            continue
        m = _SUBGRAPH.match(line)
        if m:
            group = m["id"]
            chart.groups[group] = m["title"] or group
            continue
        m = _EDGE.match(line)
        if m:
            for nid in (m["a"], m["b"]):
                chart.nodes.setdefault(nid, Node(nid, nid))
            op = m["op"]
            chart.edges.append(Edge(m["a"], m["b"], dotted="." in op, arrow=op.endswith(">")))
            continue
        m = _NODE.match(line)
        if m:
            if m["cyl"] is not None:
                label, shape = m["cyl"], "cylinder"
            elif m["stadium"] is not None:
                label, shape = m["stadium"], "stadium"
            else:
                label, shape = (m["boxq"] if m["boxq"] is not None else m["box"]), "box"
            node = chart.nodes.setdefault(m["id"], Node(m["id"], label))
            node.label, node.shape = label, shape
            if group is not None:
                node.group = group
    return chart


def _ranks(chart: Flowchart) -> dict[str, int]:
    """Longest path from a source; bounded relaxation, so a cycle cannot loop forever."""
    rank = dict.fromkeys(chart.nodes, 0)
    for _ in range(len(chart.nodes)):
        changed = False
        for e in chart.edges:
            if rank[e.b] < rank[e.a] + 1:
                rank[e.b] = rank[e.a] + 1
                changed = True
        if not changed:
            break
    return rank


def _bands(chart: Flowchart) -> dict[str, str]:
    """Each node's band: its subgraph; a free node joins a neighbour's subgraph (readers
    first), else a band of its own."""
    band = {n.id: n.group for n in chart.nodes.values() if n.group is not None}
    for node in chart.nodes.values():
        if node.id in band:
            continue
        readers = [e.b for e in chart.edges if e.a == node.id and e.b in band]
        writers = [e.a for e in chart.edges if e.b == node.id and e.a in band]
        near = readers or writers
        band[node.id] = band[near[0]] if near else f"_free_{node.id}"
    return band


def _width(label: str) -> float:
    return max(len(label) * CHAR_W + 2 * PAD, 60.0)


def render_svg(text: str, element_id: str = "topology-diagram") -> str:
    """An `<svg>` element drawing the mermaid flowchart `text`."""
    chart = parse_mermaid(text)
    if not chart.nodes:
        return (f'<svg id="{escape(element_id)}" xmlns="http://www.w3.org/2000/svg" '
                'width="200" height="40"><text x="10" y="24">(empty topology)</text></svg>')
    rank = _ranks(chart)
    band = _bands(chart)
    band_order = list(dict.fromkeys([*chart.groups, *band.values()]))
    pos: dict[str, tuple[float, float, float]] = {}  # id -> (x, y, width)
    y = MARGIN
    group_boxes: list[tuple[str, float, float, float, float]] = []
    for b in band_order:
        members = [n for n in chart.nodes.values() if band[n.id] == b]
        if not members:
            continue
        # Columns per band, from the band's first rank: bands stack, none runs off the right.
        first = min(rank[n.id] for n in members)
        col_w: dict[int, float] = {}
        for node in members:
            c = rank[node.id] - first
            col_w[c] = max(col_w.get(c, 0.0), _width(node.label))
        col_x, x = {}, MARGIN + PAD
        for c in range(max(col_w) + 1):
            col_x[c] = x
            x += col_w.get(c, 0.0) + (COL_GAP if c in col_w else 0.0)
        top = y + (TITLE_H if b in chart.groups else 0) + PAD
        stack: dict[int, int] = {}
        for node in members:
            c = rank[node.id] - first
            row = stack.get(c, 0)
            stack[c] = row + 1
            w = _width(node.label)
            pos[node.id] = (col_x[c] + (col_w[c] - w) / 2, top + row * (NODE_H + ROW_GAP), w)
        rows = max(stack.values())
        bottom = top + rows * (NODE_H + ROW_GAP) - ROW_GAP + PAD
        if b in chart.groups:
            inner = [pos[n.id] for n in members if n.group == b]
            if inner:
                x0 = min(p[0] for p in inner) - PAD
                x1 = max(p[0] + p[2] for p in inner) + PAD
                group_boxes.append((chart.groups[b], x0, y, x1 - x0, bottom - y))
        y = bottom + BAND_GAP
    width = max(p[0] + p[2] for p in pos.values()) + PAD + MARGIN
    height = y - BAND_GAP + MARGIN
    out = [f'<svg id="{escape(element_id)}" xmlns="http://www.w3.org/2000/svg" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}" '
           'role="img" aria-label="topology diagram" font-family="sans-serif" font-size="12">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
           'fill="#555"/></marker></defs>']
    for title, x0, y0, w, h in group_boxes:
        out.append(f'<g class="subgraph"><rect x="{x0:.1f}" y="{y0:.1f}" width="{w:.1f}" '
                   f'height="{h:.1f}" rx="6" fill="#f4f6fb" stroke="#9aa5c4"/>'
                   f'<text x="{x0 + 8:.1f}" y="{y0 + 15:.1f}" font-weight="bold" '
                   f'fill="#445">{escape(title)}</text></g>')
    for e in chart.edges:
        style = ' stroke-dasharray="4 3"' if e.dotted else ""
        marker = ' marker-end="url(#arrow)"' if e.arrow else ""
        out.append(f'<path class="edge" d="{_edge_path(pos[e.a], pos[e.b])}" fill="none" '
                   f'stroke="#555"{style}{marker}/>')
    for node in chart.nodes.values():
        x, y0, w = pos[node.id]
        out.append(_shape(node, x, y0, w))
    out.append("</svg>")
    return "".join(out)


def _edge_path(a: tuple[float, float, float], b: tuple[float, float, float]) -> str:
    """Right side to left side; to a node further left (the next band down), bottom to top."""
    ax, ay, aw = a
    bx, by, bw = b
    if bx >= ax + aw:
        x1, y1, x2, y2 = ax + aw, ay + NODE_H / 2, bx, by + NODE_H / 2
        dx = max((x2 - x1) / 2, 20.0)
        return (f"M{x1:.1f},{y1:.1f} C{x1 + dx:.1f},{y1:.1f} {x2 - dx:.1f},{y2:.1f} "
                f"{x2:.1f},{y2:.1f}")
    down = by > ay
    x1, y1 = ax + aw / 2, ay + (NODE_H if down else 0)
    x2, y2 = bx + bw / 2, by + (0 if down else NODE_H)
    dy = max(abs(y2 - y1) / 2, 20.0) * (1 if down else -1)
    return f"M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 + dy:.1f} {x2:.1f},{y2 - dy:.1f} {x2:.1f},{y2:.1f}"


def _shape(node: Node, x: float, y: float, w: float) -> str:
    h = NODE_H
    label = escape(node.label)
    if node.shape == "stadium":
        body = (f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
                f'rx="{h / 2:.1f}" fill="#fff7e0" stroke="#c9a227"/>')
    elif node.shape == "cylinder":
        e = 5.0
        body = (f'<path d="M{x:.1f},{y + e:.1f} a{w / 2:.1f},{e:.1f} 0 0,1 {w:.1f},0 '
                f'v{h - 2 * e:.1f} a{w / 2:.1f},{e:.1f} 0 0,1 {-w:.1f},0 z" fill="#eaf7ea" '
                f'stroke="#4a9a4a"/><path d="M{x:.1f},{y + e:.1f} a{w / 2:.1f},{e:.1f} 0 0,0 '
                f'{w:.1f},0" fill="none" stroke="#4a9a4a"/>')
    else:
        body = (f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="4" '
                f'fill="#ffffff" stroke="#5b6b9a"/>')
    return (f'<g class="node {node.shape}" data-id="{escape(node.id)}"><title>{label}</title>'
            f'{body}<text x="{x + w / 2:.1f}" y="{y + h / 2 + 4:.1f}" '
            f'text-anchor="middle">{label}</text></g>')
