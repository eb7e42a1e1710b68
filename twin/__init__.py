"""The functional core of fleet-twin.

Everything that decides lives here as pure functions of their inputs: no Kafka,
HTTP, files, clocks or globals. The live workers and replay call the same code,
so they agree bit for bit.
"""
