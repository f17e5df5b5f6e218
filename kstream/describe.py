"""What `kstream describe` prints: the topology with its topics, stores and internal topics.

`Topology.describe()` lists sub-topologies and their nodes; this adds what an operator needs
next to it: which topics are inputs and outputs, which topics kstream creates (changelogs,
repartition topics, the dead-letter topic) under which names, and each store's kind, backend
and changelog. `describe_mermaid` draws the same as a mermaid flowchart: topics as stadiums,
stores as cylinders, processors as boxes inside one subgraph per sub-topology (the status page
renders it with kstream.diagram, without any JavaScript library).
"""

from __future__ import annotations

from typing import Any

from kstream.topology import ProcessorNode, SinkNode, SourceNode, Topology

__all__ = ["describe_mermaid", "describe_text"]


def _store_kind(builder: Any) -> str:
    kind = type(builder).__name__
    if kind.startswith("Session"):
        return "session"
    if kind.startswith("Window"):
        return "window"
    return "key-value"


def describe_text(topology: Topology, application_id: str, dlq_topic: str | None = None) -> str:
    """Topology.describe() plus topics, internal topics and stores, with their real names."""
    topology.bind(application_id)
    internal = topology.internal_topics
    lines = [topology.describe(), "", "Topics:"]
    inputs = [t for t in topology.source_topics if t not in internal]
    outputs = [t for t in dict.fromkeys(topology.sink_topics()) if t not in internal]
    lines.append(f"  input:  {', '.join(inputs) or '-'}")
    lines.append(f"  output: {', '.join(outputs) or '-'}")
    if any(isinstance(n, SinkNode) and not isinstance(n.topic, str)
           for n in topology.nodes.values()):
        lines.append("  output: <dynamic> (chosen per record)")
    lines.append("Internal topics (created by kstream, deleted by `kstream reset`):")
    for name, spec in sorted(internal.items()):
        lines.append(f"  {name} ({spec.kind})")
    if not internal:
        lines.append("  -")
    if dlq_topic is not None:
        lines.append(f"Dead-letter topic: {dlq_topic} (kept by `kstream reset`)")
    lines.append("Stores:")
    for name, builder in sorted(topology.stores.items()):
        changelog = (builder.changelog_topic(application_id) if getattr(builder, "logging", False)
                     else "not logged")
        users = [n.name for n in topology.nodes.values()
                 if isinstance(n, ProcessorNode) and name in n.stores]
        lines.append(f"  {name}: {_store_kind(builder)}, {getattr(builder, 'backend', '?')}, "
                     f"changelog {changelog}, used by {', '.join(users) or '-'}")
    if not topology.stores:
        lines.append("  -")
    if topology.global_stores:
        lines.append("Global stores (the whole topic in every instance; the topic is the "
                     "changelog):")
        for name, spec in sorted(topology.global_stores.items()):
            lines.append(f"  {name}: key-value, {spec.backend}, topic {spec.topic}")
    return "\n".join(lines)


def describe_mermaid(topology: Topology, application_id: str | None = None) -> str:
    """A mermaid flowchart: sub-topologies as subgraphs, topics and stores as their own
    shapes, and the edges that join sub-topologies through repartition topics."""
    if application_id is not None:
        topology.bind(application_id)
    lines = ["flowchart LR"]
    topics: dict[str, str] = {}

    def topic_id(topic: str) -> str:
        if topic not in topics:
            topics[topic] = f"t_{_mid(topic)}"
        return topics[topic]

    edges: list[str] = []
    for sub in topology.subtopologies():
        lines.append(f"  subgraph sub{sub.index}[\"Sub-topology {sub.index}\"]")
        for name in sub.nodes:
            lines.append(f"    {_mid(name)}[\"{_label(name)}\"]")
        for store in sub.stores:
            lines.append(f"    s_{_mid(store)}[(\"{_label(store)}\")]")
        lines.append("  end")
        for name in sub.nodes:
            node = topology.nodes[name]
            if isinstance(node, SourceNode):
                edges += [f"  {topic_id(t)} --> {_mid(name)}" for t in node.topics]
            elif isinstance(node, SinkNode):
                target = node.topic if isinstance(node.topic, str) else "<dynamic>"
                edges.append(f"  {_mid(name)} --> {topic_id(target)}")
            elif isinstance(node, ProcessorNode):
                edges += [f"  {_mid(name)} -.- s_{_mid(store)}" for store in node.stores]
            edges += [f"  {_mid(name)} --> {_mid(kid)}" for kid in topology.children[name]]
    for index, spec in enumerate(topology.global_stores.values()):
        lines.append(f"  subgraph global{index}[\"Global store {_label(spec.name)}\"]")
        lines.append(f"    g_{_mid(spec.name)}[(\"{_label(spec.name)}\")]")
        lines.append("  end")
        edges.append(f"  {topic_id(spec.topic)} --> g_{_mid(spec.name)}")
    for topic, tid in topics.items():
        lines.append(f"  {tid}([\"{_label(topic)}\"])")
    return "\n".join(lines + edges)


def _mid(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def _label(text: str) -> str:
    return text.replace('"', "'")
