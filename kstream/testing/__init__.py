"""Testing support: the in-memory TopologyTestDriver and real-Kafka helpers."""

from kstream.testing.apps import RunningApp, running_app
from kstream.testing.driver import TestInputTopic, TestOutputTopic, TopologyTestDriver
from kstream.testing.kafka import KafkaCluster, ReadRecord, wait_until
from kstream.testing.processes import AppProcess

__all__ = ["AppProcess", "KafkaCluster", "ReadRecord", "RunningApp", "TestInputTopic",
           "TestOutputTopic", "TopologyTestDriver", "running_app", "wait_until"]
