"""Repartitioning: write a stream to `<application_id>-<name>-repartition` and read it back.

Why: after a key change, records of one key may sit in any partition; a join or aggregation
needs every record of a key in one task. The sink partitions by the serialized key (murmur2,
like Java clients), so the key serde chosen here decides co-partitioning with the other
input of a join: it must write the same key bytes as that input's topic does.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from kstream.topology import APP_ID, TopologyError
from serdes import Serde

if TYPE_CHECKING:
    from kstream.dsl.stream import Stream

_LEGAL_NAME = re.compile(r"[A-Za-z0-9._-]+")


def repartition_topic(name: str) -> str:
    """The repartition topic's name before the application id is bound."""
    if not _LEGAL_NAME.fullmatch(name or ""):
        raise TopologyError(f"name {name!r} must be non-empty and use only letters, digits, "
                            "'.', '_' and '-' (it names a repartition topic)")
    return f"{APP_ID}-{name}-repartition"


def repartition(stream: Stream, name: str, key_serde: Serde, value_serde: Serde,
                partitions: int | None = None) -> Stream:
    """A copy of `stream` read back from its repartition topic (keyed as it was written).

    `partitions` None sizes the topic from its inputs (or from the join it feeds; see
    kstream.runtime.topics.internal_partitions).
    """
    from kstream.dsl.stream import Stream

    builder = stream._builder
    topic = builder.topology.add_internal_topic(repartition_topic(name), "repartition",
                                                partitions=partitions)
    stream.to(topic, key_serde=key_serde, value_serde=value_serde,
              name=f"{name}-repartition-sink")
    source = f"{name}-repartition-source"
    builder.topology.add_source(source, topic, key_serde, value_serde)
    return Stream(builder, source, key_serde, value_serde)
