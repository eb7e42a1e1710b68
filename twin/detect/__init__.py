"""Online anomaly detectors: pure functions `(state, reading) -> (state, finding)`.

Event time only, deterministic, state small enough to live in the twin.
"""
