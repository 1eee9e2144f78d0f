"""Confluent-compatible Schema Registry: client, wire-format serde, embedded server."""
