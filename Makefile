# Two commands do everything on a fresh Debian machine with python3 and make:
#   make run    start the gateway on its embedded defaults
#   make test   install what the tests need and run lint, types and the whole suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test venv system-deps lint typecheck pytest bench clean

# The dev venv takes requirements-test.lock (the runtime pins of requirements.lock plus the
# test tools); a production venv takes requirements.lock alone (deploy/README.md).
$(STAMP): requirements-test.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed: installing python3-venv"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --disable-pip-version-check --require-hashes -r requirements-test.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

# Debian packages the suite drives for real: chromium (browser tests), postgresql, OpenSSH's
# sftp and nginx (the scaled-out test). Package scripts must not start services (nginx
# on port 80): a policy-rc.d says no for the length of the install.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v sftp >/dev/null || missing="$$missing openssh-client"; \
	test -x /usr/sbin/nginx || missing="$$missing nginx-light"; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  policy=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy=1; fi; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  status=$$?; if [ -n "$$policy" ]; then rm -f /usr/sbin/policy-rc.d; fi; exit $$status; \
	fi

run: venv
	$(BIN)/edi834 serve

lint: venv
	$(BIN)/ruff check parsers validators gateway tests
	$(BIN)/ruff format --check parsers validators gateway tests

typecheck: venv
	$(BIN)/mypy

# One pytest-xdist worker more than there are cores: a worker waiting on a server it started
# (or on PostgreSQL, or a browser) leaves its core to another. On this 2-core machine, three
# workers ran the suite in 8:14-8:20 where two took 9:04 (same commit, same hour).
pytest: venv system-deps
	PYTEST_XDIST_AUTO_NUM_WORKERS=$${PYTEST_XDIST_AUTO_NUM_WORKERS:-$$(( $$(nproc) + 1 ))} \
	  $(BIN)/pytest -q -p no:cacheprovider

test: lint typecheck pytest

bench: venv
	$(BIN)/python tests/benchmarks/bench_validate.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
