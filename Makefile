# The two set-up commands of the README are `make run` and `make test`; both install first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: install browser wrk run test lint format bench screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## Debian's chromium for the browser tests (Playwright's own browser download needs the
## Internet); installed once, when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian) for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## wrk drives the benchmarks' load; installed once, when missing.
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  echo "installing wrk (Debian) for the benchmarks"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

## Run the service on SQLite with the demo account; prints how to call it.
run: install
	$(BIN)/learndir demo --account-file examples/demo.yaml

## The whole test suite, on SQLite and PostgreSQL.
test: install browser
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

## The console's screenshots in docs/console/ (README), taken by its browser tests.
screenshots: install browser
	LEARNDIR_SCREENSHOTS=docs/console $(BIN)/python -m pytest tests/console -q

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

## The speed targets on both databases (see bench/README.md for the other benchmarks).
bench: install wrk
	$(BIN)/python bench/targets.py --db sqlite --repeat 3
	$(BIN)/python bench/targets.py --db postgres --repeat 3

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache learndir-demo.db*
