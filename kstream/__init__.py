"""kstream: Kafka-native stream processing for Python."""

__version__ = "0.1.0"
