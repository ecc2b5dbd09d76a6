# bench-cluster: the two commands a newcomer needs are `make demo` and `make test`.
# Both install what they need (Debian packages, the venv, generated code) idempotently.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: all deps venv protos protos-check lint test test-slow test-all test-fast test-e2e demo down bench wheel image clean

all: test

deps:
	bash scripts/install-system-deps.sh

# The venv is made from Debian's interpreter: ordinary users (workspace-ctl, Jupyter kernels, SGE jobs)
# must be able to run it, and a pyenv build under /root (mode 0700) is unreachable for them.
BASE_PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)

# setup.py and the C sources: the native fast-mount engine is compiled by `pip install -e`.
$(STAMP): pyproject.toml setup.py $(wildcard agent/fastmount/native/*.[ch])
	test -x $(PY) || $(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: deps $(STAMP)

protos: $(STAMP)
	$(PY) scripts/gen_protos.py

protos-check: $(STAMP)
	$(PY) scripts/gen_protos.py --check

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The README's test command: static checks, unit, integration and end-to-end suites (~15 min).
test: venv protos-check lint
	$(VENV)/bin/pytest -ra --durations=25 -m "not slow" $(PYTEST_ARGS)

# The slow suites (systemd-nspawn boot, spot interruption on a cluster, kill -9 at every drain step).
# CI runs them after `make test`.
test-slow: venv
	$(VENV)/bin/pytest -ra --durations=25 -m slow $(PYTEST_ARGS)

test-all: test test-slow

# The quick loop while developing: no end-to-end cluster, no systemd-nspawn boot.
test-fast: venv protos-check
	$(VENV)/bin/pytest -ra -m "not slow and not e2e" $(PYTEST_ARGS)

test-e2e: venv
	$(VENV)/bin/pytest -ra -m e2e $(PYTEST_ARGS)

demo: venv
	bash scripts/demo.sh

# Remove a local cluster (also after a crashed `bench-cluster up`).
down: $(STAMP)
	$(VENV)/bin/bench-cluster down

bench: venv
	$(PY) benchmarks/heartbeats.py
	$(PY) benchmarks/autoscaler.py
	$(PY) benchmarks/fastmount.py
	$(PY) benchmarks/web.py

wheel: $(STAMP)
	$(PY) -m pip wheel --no-deps -w dist .

# The node image (needs AWS credentials; `packer validate` runs offline in the tests).
image: wheel
	cd packer && packer build -var wheel_path=$$(ls $(CURDIR)/dist/bench_cluster-*.whl | head -1) bench-node.pkr.hcl

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist *.egg-info
