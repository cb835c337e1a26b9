# taskq developer tasks. `make test` is what CI runs (.ci/run).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# The integration tests run a second time on a private 3-master Redis Cluster; left out:
# those that check the single-node fixtures (or spy with MONITOR on one server), and the
# cluster and sentinel tests, which start their own servers in the first pass.
CLUSTER_TESTS := tests/integration --deselect tests/integration/test_fixtures.py \
	--deselect tests/integration/test_mover.py::test_mover_sleeps_until_due_and_is_woken_by_a_nearer_member \
	--deselect tests/integration/test_cluster.py --deselect tests/integration/test_sentinel.py

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
