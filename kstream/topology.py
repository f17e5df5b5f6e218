"""The processing graph: sources, processors, sinks and stores, split into sub-topologies.

Node names are the identity of operators (and of their state and metrics), so they must be
unique and stable; the DSL generates them only for stateless operators.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kstream._serde_defaults import Part, SerdeDefaults
from kstream.errors import TopologyError  # defined with the other errors; importable here
from kstream.processor import Processor
from kstream.record import Record
from serdes import Serde, resolve

TimestampExtractor = Callable[[Record, int], int]
"""(record with deserialized key/value, partition's stream time) -> event time in ms."""

Partitioner = Callable[[Any, Any, int], int]
"""(key, value, number of partitions) -> partition."""

TopicChooser = Callable[[Record], str]
"""(record about to be written) -> the topic to write it to (`Stream.to(chooser)`)."""


APP_ID = "${app}"
"""Placeholder in internal topic names, replaced by the application id when the app binds."""


@dataclass
class InternalTopic:
    """A topic kstream creates: repartition topics between sub-topologies, store changelogs."""

    name: str  # may contain APP_ID until bound
    kind: str  # "repartition" or "changelog"
    config: dict[str, str] = field(default_factory=dict)
    partitions: int | None = None  # explicit size (Stream.repartition); None: sized from inputs




@dataclass
class SourceNode:
    name: str
    topics: list[str]
    key_serde: Serde
    value_serde: Serde
    timestamp_extractor: TimestampExtractor | None = None


@dataclass
class ProcessorNode:
    name: str
    supplier: Callable[[], Processor]
    stores: list[str] = field(default_factory=list)


@dataclass
class SinkNode:
    name: str
    topic: str | TopicChooser
    key_serde: Serde
    value_serde: Serde
    partitioner: Partitioner | None = None


Node = SourceNode | ProcessorNode | SinkNode


@dataclass
class SubTopology:
    """A connected part of the graph; it runs as one task per input partition."""

    index: int
    nodes: list[str]
    source_topics: list[str]
    stores: list[str]


class Topology:
    """Build with `add_source`/`add_processor`/`add_sink`, or through `StreamBuilder`."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.children: dict[str, list[str]] = {}
        self.parents: dict[str, list[str]] = {}
        self.stores: dict[str, Any] = {}  # name -> store builder (see kstream.state)
        # name -> GlobalStoreBuilder: whole topics in every instance, read by any processor
        self.global_stores: dict[str, Any] = {}
        self._topic_to_source: dict[str, str] = {}
        self.internal_topics: dict[str, InternalTopic] = {}
        self.application_id: str | None = None
        # Set by operators that route records to `<application_id>-dlq` (e.g. late records).
        self.dlq_required = False
        # Where no serde was given: placeholders bound to the app's default serdes.
        self.serde_defaults = SerdeDefaults()

    # -- building ------------------------------------------------------------------------------
    def _add(self, node: Node, parents: Iterable[str]) -> None:
        if node.name in self.nodes:
            raise TopologyError(f"a node named {node.name!r} already exists")
        parents = list(parents)
        for parent in parents:
            if parent not in self.nodes:
                raise TopologyError(f"{node.name!r}: parent {parent!r} does not exist")
            if isinstance(self.nodes[parent], SinkNode):
                raise TopologyError(f"{node.name!r}: parent {parent!r} is a sink")
        self.nodes[node.name] = node
        self.children[node.name] = []
        self.parents[node.name] = parents
        for parent in parents:
            self.children[parent].append(node.name)

    def add_source(self, name: str, topics: str | Iterable[str], key_serde: Any = None,
                   value_serde: Any = None,
                   timestamp_extractor: TimestampExtractor | None = None) -> Topology:
        """Add source node `name` reading `topics` (a name or names; a topic has one source).

        Serdes as in `serdes.resolve` (None: the app's `default_key_serde` /
        `default_value_serde`, else raw bytes); `timestamp_extractor(record,
        partition_time) -> event time in ms`. Returns self, to chain."""
        topic_list = [topics] if isinstance(topics, str) else list(topics)
        if not topic_list:
            raise TopologyError(f"source {name!r} names no topic")
        for topic in topic_list:
            if topic in self._topic_to_source:
                raise TopologyError(
                    f"topic {topic!r} is already read by source {self._topic_to_source[topic]!r}")
            self._check_not_global(topic)
        where = f"source {name!r}"
        self._add(SourceNode(name, topic_list, self._serde_or_default(key_serde, "key", where),
                             self._serde_or_default(value_serde, "value", where),
                             timestamp_extractor), [])
        for topic in topic_list:
            self._topic_to_source[topic] = name
        return self

    def add_processor(self, name: str, supplier: Callable[[], Processor], *parents: str,
                      stores: Iterable[str] = ()) -> Topology:
        """Add processor node `name` below `parents`: `supplier() -> Processor` makes one
        instance per task. `stores` are store names to connect (see `add_store`). Returns
        self, to chain."""
        if not parents:
            raise TopologyError(f"processor {name!r} needs at least one parent")
        self._add(ProcessorNode(name, supplier, list(stores)), parents)
        return self

    def add_sink(self, name: str, topic: str | TopicChooser, *parents: str, key_serde: Any = None,
                 value_serde: Any = None, partitioner: Partitioner | None = None) -> Topology:
        """Add sink node `name` below `parents`, writing to `topic` or to the topic
        `topic(record) -> str` picks. Serdes as in `serdes.resolve` (None: the app's
        default serdes, else raw bytes);
        `partitioner(key, value, num_partitions) -> partition`, default murmur2 of the key
        bytes. Returns self, to chain."""
        if not parents:
            raise TopologyError(f"sink {name!r} needs at least one parent")
        where = f"sink {name!r}"
        self._add(SinkNode(name, topic, self._serde_or_default(key_serde, "key", where),
                           self._serde_or_default(value_serde, "value", where), partitioner),
                  parents)
        return self

    def _serde_or_default(self, serde: Any, part: Part, where: str) -> Serde:
        if serde is None:
            return self.serde_defaults.raw(part, where)
        return self.serde_defaults.adopt(resolve(serde))

    def add_store(self, builder: Any, *processor_names: str) -> Topology:
        """Register a store builder (see kstream.state) and connect it to processors by name."""
        name = builder.name
        if name in self.global_stores:
            raise TopologyError(f"a global store named {name!r} already exists")
        if name in self.stores and self.stores[name] is not builder:
            raise TopologyError(f"a store named {name!r} already exists")
        self.stores[name] = builder
        for part in ("key_serde", "value_serde"):  # kv_store(name) made without a topology
            self.serde_defaults.adopt(getattr(builder, part, None))
        self.connect_store(name, *processor_names)
        return self

    def add_global_store(self, builder: Any) -> Topology:
        """Register a global store (`kstream.state.global_store(name, topic, ...)`): every
        instance holds the whole of its topic, bootstrapped before any processing and kept
        current by the engine; every processor reads it with `context.get_store(name)`
        (read-only). The topic is its changelog, and is read by nothing else in the
        topology. Returns self, to chain."""
        name, topic = builder.name, builder.topic
        if name in self.stores or name in self.global_stores:
            raise TopologyError(f"a store named {name!r} already exists")
        if topic in self._topic_to_source:
            raise TopologyError(f"global store {name!r}: topic {topic!r} is already read by "
                                f"source {self._topic_to_source[topic]!r}")
        self._check_not_global(topic)
        self.global_stores[name] = builder
        for part in ("key_serde", "value_serde"):  # global_store(...) made without a topology
            self.serde_defaults.adopt(getattr(builder, part, None))
        return self

    def _check_not_global(self, topic: str) -> None:
        for other in self.global_stores.values():
            if other.topic == topic:
                raise TopologyError(f"topic {topic!r} is already read by global store "
                                    f"{other.name!r}")

    @property
    def global_topics(self) -> list[str]:
        """The topics global stores mirror (not subscribed: every instance reads them all)."""
        return [spec.topic for spec in self.global_stores.values()]

    def connect_store(self, store_name: str, *processor_names: str) -> Topology:
        """Let processors read and write the registered store `store_name` through
        `context.get_store`. Processors sharing a store run in one sub-topology. Returns
        self, to chain."""
        if store_name in self.global_stores:
            raise TopologyError(f"{store_name!r} is a global store: every processor reads it "
                                "with context.get_store without connecting it")
        if store_name not in self.stores:
            raise TopologyError(f"unknown store {store_name!r}")
        for pname in processor_names:
            node = self.nodes.get(pname)
            if not isinstance(node, ProcessorNode):
                raise TopologyError(f"store {store_name!r}: {pname!r} is not a processor")
            if store_name not in node.stores:
                node.stores.append(store_name)
        return self

    def add_internal_topic(self, name: str, kind: str,
                           config: dict[str, str] | None = None,
                           partitions: int | None = None) -> str:
        """Register a topic kstream creates (`kind` "repartition" or "changelog"); `name`
        may contain the `${app}` placeholder until `bind`. Returns the name. Used by the
        DSL; operator names must be unique."""
        if name in self.internal_topics:
            raise TopologyError(f"internal topic {name!r} already exists: operator names must "
                                "be unique")
        if partitions is not None and partitions <= 0:
            raise TopologyError(f"internal topic {name!r}: partitions must be positive, "
                                f"got {partitions}")
        self.internal_topics[name] = InternalTopic(name, kind, dict(config or {}), partitions)
        return name

    def bind(self, application_id: str) -> Topology:
        """Give internal topics their real names (`<application_id>-...`). Idempotent."""
        if self.application_id is not None:
            if self.application_id != application_id:
                raise TopologyError(f"topology already bound to {self.application_id!r}; build "
                                    "a new topology for another application id")
            return self

        def real(topic: str) -> str:
            return topic.replace(APP_ID, application_id)

        for node in self.nodes.values():
            if isinstance(node, SourceNode):
                node.topics = [real(t) for t in node.topics]
            elif isinstance(node, SinkNode) and isinstance(node.topic, str):
                node.topic = real(node.topic)
        self._topic_to_source = {real(t): n for t, n in self._topic_to_source.items()}
        for spec in self.global_stores.values():
            spec.topic = real(spec.topic)
        self.internal_topics = {real(t): InternalTopic(real(t), spec.kind, spec.config,
                                                       spec.partitions)
                                for t, spec in self.internal_topics.items()}
        for builder in self.stores.values():
            if getattr(builder, "logging", False):
                topic = builder.changelog_topic(application_id)
                self.internal_topics[topic] = InternalTopic(
                    topic, "changelog", builder.changelog_topic_config())
        self.application_id = application_id
        return self

    # -- reading -------------------------------------------------------------------------------
    @property
    def source_topics(self) -> list[str]:
        """Every topic a source reads (internal repartition topics included)."""
        return list(self._topic_to_source)

    def source_for_topic(self, topic: str) -> SourceNode:
        """The source node reading `topic` (KeyError if none does)."""
        node = self.nodes[self._topic_to_source[topic]]
        assert isinstance(node, SourceNode)
        return node

    def sink_topics(self) -> list[str]:
        """Every fixed topic a sink writes (sinks choosing topics per record not included)."""
        return [n.topic for n in self.nodes.values()
                if isinstance(n, SinkNode) and isinstance(n.topic, str)]

    def subtopologies(self) -> list[SubTopology]:
        """Connected components in node-insertion order (stable across runs of the same code).

        Processors that share a store belong together, as the store lives in one task.
        """
        group: dict[str, str] = {name: name for name in self.nodes}

        def find(x: str) -> str:
            while group[x] != x:
                group[x] = group[group[x]]
                x = group[x]
            return x

        def union(a: str, b: str) -> None:
            ra, rb = find(a), find(b)
            if ra != rb:
                group[rb] = ra

        for name, kids in self.children.items():
            for kid in kids:
                union(name, kid)
        store_owner: dict[str, str] = {}
        for node in self.nodes.values():
            if isinstance(node, ProcessorNode):
                for store in node.stores:
                    if store in store_owner:
                        union(store_owner[store], node.name)
                    store_owner[store] = node.name
        components: dict[str, list[str]] = {}
        for name in self.nodes:
            components.setdefault(find(name), []).append(name)
        result = []
        for index, names in enumerate(components.values()):
            topics = [t for n in names if isinstance(s := self.nodes[n], SourceNode)
                      for t in s.topics]
            stores = sorted({st for n in names if isinstance(p := self.nodes[n], ProcessorNode)
                             for st in p.stores})
            if not topics:
                raise TopologyError(f"nodes {names} are not reachable from any source")
            result.append(SubTopology(index, names, topics, stores))
        return result

    def describe(self) -> str:
        """A text description, one block per sub-topology, like Kafka Streams' describe()."""
        lines = ["Topologies:"]
        for sub in self.subtopologies():
            lines.append(f"  Sub-topology: {sub.index}")
            for name in sub.nodes:
                node = self.nodes[name]
                kids = ", ".join(self.children[name]) or "none"
                if isinstance(node, SourceNode):
                    lines.append(f"    Source: {name} (topics: [{', '.join(node.topics)}])")
                elif isinstance(node, SinkNode):
                    topic = node.topic if isinstance(node.topic, str) else "<dynamic>"
                    lines.append(f"    Sink: {name} (topic: {topic})")
                else:
                    stores = f" (stores: [{', '.join(node.stores)}])" if node.stores else ""
                    lines.append(f"    Processor: {name}{stores}")
                lines.append(f"      --> {kids}")
        for index, spec in enumerate(self.global_stores.values(), len(self.subtopologies())):
            lines.append(f"  Sub-topology: {index} for global store (will not generate tasks)")
            lines.append(f"    Source: {spec.name}-source (topics: [{spec.topic}])")
            lines.append(f"      --> {spec.name}")
            lines.append(f"    Processor: {spec.name} (stores: [{spec.name}])")
            lines.append("      --> none")
        return "\n".join(lines)

    def describe_mermaid(self) -> str:
        """The graph as a mermaid flowchart, one subgraph per sub-topology."""
        lines = ["flowchart LR"]
        for sub in self.subtopologies():
            lines.append(f"  subgraph sub{sub.index}[Sub-topology {sub.index}]")
            for name in sub.nodes:
                lines.append(f"    {_mid(name)}[\"{name}\"]")
            lines.append("  end")
        for spec in self.global_stores.values():
            gid = _mid(f"global-{spec.name}")
            lines.append(f"  subgraph {gid}[Global store {spec.name}]")
            lines.append(f"    {gid}_topic([\"{spec.topic}\"])")
            lines.append(f"    {gid}_store[(\"{spec.name}\")]")
            lines.append("  end")
            lines.append(f"  {gid}_topic --> {gid}_store")
        for name, kids in self.children.items():
            for kid in kids:
                lines.append(f"  {_mid(name)} --> {_mid(kid)}")
        return "\n".join(lines)


def _mid(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)
