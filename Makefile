# The two commands of the no-ROS world (README): `make setup` is implied by `make test`.
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
export AMENT_PREFIX_PATH := $(VENV)

.PHONY: setup test demo bench docs lint format colcon-list lock clean

setup:
	@tools/setup_venv.sh $(VENV)

## make test: style gate, then every test (what .ci/run runs). Sets itself up first.
## TEST_WORKERS: pytest-xdist workers, each taking whole test files. 0 (one process) on
## 2 cores: with 2 workers the timing tests of the nodes failed (docs/testing.md).
TEST_WORKERS ?= 0
test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

## make demo: the whole loop on the simulated arm (records demos, trains, runs episodes).
demo: setup
	$(VENV)/bin/vlac_demo $(DEMO_ARGS)

## make bench: every benchmark script, figures written to docs/benchmarks.md (not run by CI).
bench: setup
	$(VENV)/bin/vlac_bench_report $(BENCH_ARGS)

## make docs: regenerate docs/nodes.md from the nodes' config dataclasses.
docs: setup
	$(VENV)/bin/vlac_node_docs

lint: setup
	$(PY) -m ruff check .

format: setup
	$(PY) -m ruff check --fix .

colcon-list: setup
	$(VENV)/bin/colcon list

## make lock: re-resolve the full pin list after editing requirements/*.txt.
lock: setup
	$(PY) -m pip freeze --exclude-editable | grep -v '^vlac_interfaces' \
	  | sed 's/^torch==2.13.0+cpu/torch==2.13.0/' > requirements/constraints.txt.new
	mv requirements/constraints.txt.new requirements/constraints.txt

clean:
	rm -rf $(VENV) build install log
