"""Testing support: the in-memory TopologyTestDriver and real-Kafka helpers."""

from kstream.testing.apps import RunningApp, running_app
from kstream.testing.driver import TestInputTopic, TestOutputTopic, TopologyTestDriver
from kstream.testing.kafka import KafkaCluster, ReadRecord, wait_until

__all__ = ["KafkaCluster", "ReadRecord", "RunningApp", "TestInputTopic", "TestOutputTopic",
           "TopologyTestDriver", "running_app", "wait_until"]
