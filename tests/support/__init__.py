"""What test modules share: builders of telemetry, waits, readers of topics, stand-ins for
Alertmanager's receivers, ports.

Test modules import helpers from here, never from one another or from a conftest;
conftest files hold fixtures only (they may import from here too).
"""
