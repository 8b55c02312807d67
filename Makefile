# The two commands of the no-ROS world (README): `make setup` is implied by `make test`.
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
export AMENT_PREFIX_PATH := $(VENV)

.PHONY: setup test demo lint format colcon-list lock clean

setup:
	@tools/setup_venv.sh $(VENV)

## make test: style gate, then every test (what .ci/run runs). Sets itself up first.
test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

## make demo: the whole loop on the simulated arm (records demos, trains, runs episodes).
demo: setup
	$(VENV)/bin/vlac_demo $(DEMO_ARGS)

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
