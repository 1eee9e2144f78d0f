# The two commands of the README (demo, test) and the benchmark. Each creates .venv and
# installs what it needs; `test` also installs Debian's chromium, prometheus (server, promtool),
# a JDK and Maven (Apache Kafka's broker runs from its Maven jars).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-fast lint bench system-deps java-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# make demo: Tansu (nothing but Python); make demo BROKER=kafka: Apache Kafka (Java and Maven).
BROKER ?= tansu

demo: $(STAMP)
	@if [ "$(BROKER)" = kafka ]; then $(MAKE) --no-print-directory java-deps; fi
	$(BIN)/reviewpulse demo --broker $(BROKER)

# The whole suite on Apache Kafka (the evidence for users), then on Tansu what keeps the
# embedded default honest (tests marked `embedded`: first contact, the demo, a crash test,
# hostile input).
test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest --broker kafka
	$(BIN)/pytest --broker tansu -m embedded

# Unit tests only: no broker, no browser, well under a minute.
test-fast: $(STAMP)
	$(BIN)/pytest tests/unit -q -p no:randomly

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: $(STAMP) java-deps
	$(BIN)/python -m bench.pipeline

# Browser tests drive Debian's chromium; the Helm rule tests and the metrics check run promtool;
# tests/integration/test_prometheus_server.py runs the prometheus server (same package).
system-deps: java-deps
	@if ! command -v chromium >/dev/null || ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then \
	  if [ "$$(id -u)" != 0 ]; then echo "need root to apt-get install chromium prometheus" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium prometheus >/dev/null; \
	fi

# Apache Kafka runs from its jars on Maven Central (streams/dev/kafka.py): a JDK and Maven.
java-deps:
	@if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then \
	  if [ "$$(id -u)" != 0 ]; then echo "need root to apt-get install a JDK and maven" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null; \
	fi

clean:
	rm -rf $(VENV) artifacts data .pytest_cache
