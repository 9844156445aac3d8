# sluicegate: `make run` starts the main job, `make test` runs every check.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help run demo test check lint typecheck bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

run: $(STAMP)  ## start the service on 127.0.0.1:8080 with embedded storage (dev mode)
	$(VENV)/bin/sluicegate serve --host 127.0.0.1 --port 8080 --data-dir .sluicegate --dev

demo: $(STAMP)  ## a burst of calls through capping and throttling to a flaky loopback system
	$(VENV)/bin/sluicegate demo

lint: $(STAMP)  ## ruff format check and lint
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/ruff check src tests bench

typecheck: $(STAMP)  ## mypy strict on the package
	$(VENV)/bin/mypy

test: lint typecheck  ## lint, type-check and run the whole suite
	$(PY) -m pytest

bench: $(STAMP)  ## run the benchmarks; write docs/benchmarks.md and docs/benchmarks-redis.md
	$(PY) bench/run.py --write docs/benchmarks.md
	$(PY) bench/redis_limiters.py --write docs/benchmarks-redis.md

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
