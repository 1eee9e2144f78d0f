"""The embedded Confluent-compatible schema registry, stored in the Kafka topic ``_schemas``."""

from schema_registry.server.app import RunningRegistry, run, start_server

__all__ = ["RunningRegistry", "run", "start_server"]
