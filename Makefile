# The two commands of the README (demo, test) and the benchmark. Each creates .venv and
# installs what it needs; `test` also installs Debian's chromium and prometheus (server, promtool).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint bench system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/reviewpulse demo

test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m bench.pipeline

# Browser tests drive Debian's chromium; the Helm rule tests and the metrics check run promtool;
# tests/integration/test_prometheus_server.py runs the prometheus server (same package).
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then \
	  if [ "$$(id -u)" != 0 ]; then echo "need root to apt-get install chromium prometheus" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium prometheus >/dev/null; \
	fi

clean:
	rm -rf $(VENV) artifacts data .pytest_cache
