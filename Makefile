# taskq developer tasks. `make test` is what CI runs (.ci/run).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# The tests that also run on a Redis Cluster (a private 3-master one), after the suite.
CLUSTER_TESTS := $(addprefix tests/integration/test_,roundtrip.py retries.py retry_durability.py \
	flows.py flow_faults.py priority.py cache.py partitions.py dead_letter.py result_waits.py \
	worker_burst.py future_from_id.py cli.py)

.PHONY: test test-cluster lint fmt demo bench bench-scale clean distclean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -e '.[dev]'
	touch $@

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict taskq
	$(BIN)/pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-cluster

test-cluster: $(STAMP)
	$(BIN)/pytest --taskq-redis=cluster3 $(PYTEST_ARGS) $(CLUSTER_TESTS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy --strict taskq

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: $(STAMP)
	$(BIN)/python -m workers.demo

bench: $(STAMP)
	$(BIN)/python -m bench.run

bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale

clean:
	rm -rf build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
