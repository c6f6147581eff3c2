# One entry point for set-up, the main job, tests, lint, types and benchmarks.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
PYTEST_ARGS ?=
BENCH_SIZE ?= default

.PHONY: install run test soak lint typecheck bench bench-tiny redis-bin cloc-bin chromium-bin clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11); install it or run make PYTHON=python3"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,analyze]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/victor analyze .

# Tests need redis-server on PATH (fault tests start throwaway servers); the suite itself
# uses VICTOR_TEST_REDIS_URL (default 127.0.0.1:6379, db 9) or starts its own server.
redis-bin:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq || true) && apt-get install -y -qq redis-server >/dev/null; \
	  else echo "redis-server is missing: install it (sudo apt-get install -y redis-server)"; exit 1; fi; }

# The analyze agreement tests and bench compare line counts with cloc's.
cloc-bin:
	@command -v cloc >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq || true) && apt-get install -y -qq cloc >/dev/null; \
	  else echo "cloc is missing: install it (sudo apt-get install -y cloc)"; exit 1; fi; }

# The batch report test renders the page in headless Chromium, as a person would see it.
chromium-bin:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq || true) && apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: install it (sudo apt-get install -y chromium)"; exit 1; fi; }

test: install redis-bin cloc-bin chromium-bin
	$(BIN)/python -m pytest -m "not soak" $(PYTEST_ARGS)

soak: install redis-bin cloc-bin
	VICTOR_SOAK=1 $(BIN)/python -m pytest -m soak $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check workers tasks orchestrator tests
	$(BIN)/ruff format --check workers tasks orchestrator tests

typecheck: install
	$(BIN)/mypy

bench: install redis-bin cloc-bin
	@for group in $$($(BIN)/victor bench list); do \
	  echo "== $$group"; $(BIN)/victor bench $$group --size $(BENCH_SIZE) || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
