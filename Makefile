# The two commands a new user runs: `make demo` (the main job) and `make test`.
# Both create .venv, install what they need, and install graphviz's `dot` with apt-get
# when it is missing and you are root.

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test lint-flows lab bench clean system-deps venv cli-docs api-docs typecheck

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

demo: system-deps $(STAMP)
	@bash scripts/demo.sh

# two pytest-xdist workers (each starts its own redis-server processes): ~half the serial time
# on 2 cores; `make test WORKERS=0` runs it in one process
WORKERS ?= 2
test: system-deps $(STAMP)
	$(BIN)/python -m pytest -n $(WORKERS)

cli-docs: $(STAMP)
	$(BIN)/python -m typer flowkit.cli utils docs --name flowkit --title "flowkit CLI reference" --output docs/cli.md

api-docs: $(STAMP)
	$(BIN)/python -W error scripts/api_docs.py site/api

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

bench: system-deps $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis

typecheck: $(STAMP)
	$(BIN)/mypy
