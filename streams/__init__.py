"""The imperative shell of fleet-twin: Kafka, HTTP, metrics, processes, CLI."""
