# Two entry points, each doing its own set-up on a fresh Debian/Ubuntu machine:
#   make run   - the whole stack on 127.0.0.1:8080 with a demo batch
#   make test  - lint, type check and the test suite against real Redis and ClickHouse

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# the servers, and wrk for `scanward bench`
SYSTEM_BINARIES := redis-server clickhouse-server wrk

# Demo values for `make run` only; set real ones in the environment for anything else.
export SCANWARD_KEYRING_SECRET ?= demo-keyring-secret-change-me
export SCANWARD_ADMIN_TOKEN ?= demo-admin-token-change-me

.PHONY: run test lint system-packages clean

run: $(BIN)/.installed
	$(BIN)/scanward up --demo --port 8080

test: $(BIN)/.installed lint
	$(BIN)/pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# redis-server, clickhouse-server, wrk and zookeeper (for the ClickHouse cluster's replicas),
# promtool (package prometheus) and systemd-analyze (package systemd) for the checks of deploy/,
# plus python3 and its venv module on minimal images. On a host run by systemd, the prometheus
# package also starts Prometheus and its node exporter: `systemctl disable --now prometheus
# prometheus-node-exporter` if you only want promtool.
system-packages:
	@missing=""; for b in $(SYSTEM_BINARIES); do \
	  PATH="$$PATH:/usr/sbin:/sbin" command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	[ -x /usr/share/zookeeper/bin/zkServer.sh ] || missing="$$missing zookeeper"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3 python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing from the system's packages"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

$(BIN)/.installed: pyproject.toml | system-packages
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "scanward needs Python 3.11 or newer (set PYTHON=python3.11 or later)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
