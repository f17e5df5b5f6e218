"""Testing support: real-Kafka helpers and (soon) the in-memory TopologyTestDriver."""

from kstream.testing.kafka import KafkaCluster, ReadRecord, wait_until

__all__ = ["KafkaCluster", "ReadRecord", "wait_until"]
