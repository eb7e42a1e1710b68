# The two commands of the README: `make up` runs the system, `make test` runs
# the tests. Both install whatever is missing first (system packages, the
# Python venv, the Kafka jars), so a fresh machine needs nothing else.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: up down status test unit install system test-system clean-state

up: install
	$(BIN)/fleet-twin up

down:
	@if [ -x $(BIN)/fleet-twin ]; then $(BIN)/fleet-twin down; fi

status: install
	$(BIN)/fleet-twin status

test: install test-system
	$(BIN)/mypy
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

install: system $(VENV)/.installed
	@deploy/kafka/kafka.sh classpath >/dev/null

system:
	@deploy/install-system.sh

# What only the tests need on top (Chromium); `make up` does not install it.
test-system:
	@deploy/install-system.sh --test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

clean-state: down
	rm -rf .fleet-twin
