"""Testing support: the in-memory TopologyTestDriver and real-Kafka helpers."""

from kstream.testing.driver import TestInputTopic, TestOutputTopic, TopologyTestDriver
from kstream.testing.kafka import KafkaCluster, ReadRecord, wait_until

__all__ = ["KafkaCluster", "ReadRecord", "TestInputTopic", "TestOutputTopic",
           "TopologyTestDriver", "wait_until"]
