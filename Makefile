# One entry point for people and CI. `make run` serves the demo model; `make test` runs every check.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint typecheck pytest openapi bench clean constraints

$(BIN)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "dealscore needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

constraints:  ## re-pin constraints.txt to the newest versions pyproject.toml allows (then run `make test`)
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "pin with Python 3.11, as CI and the image run"'
	rm -rf .constraints-venv
	$(PYTHON) -m venv .constraints-venv
	.constraints-venv/bin/pip install --quiet --upgrade pip
	.constraints-venv/bin/pip install --quiet -e '.[dev]'
	{ sed -n '/^#/p' constraints.txt; .constraints-venv/bin/pip freeze --exclude-editable | grep -v '^#'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .constraints-venv

run: $(BIN)/.installed  ## set up, train the demo model on generated data, serve it on 127.0.0.1:8000
	$(BIN)/dealscore serve

test: lint typecheck pytest  ## set up and run every check: ruff, mypy, pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check --no-cache .

typecheck: $(BIN)/.installed
	$(BIN)/mypy model training service dealscore

# --dist worksteal: an idle process takes tests queued for a busy one (the real-process stop tests wait for
# seconds each); on 2 cores the suite took 412 s against 435-480 s with xdist's default split.
pytest: $(BIN)/.installed  ## the suite in parallel, one process per core (at most 4): pytest-xdist
	$(BIN)/pytest -q -n auto --maxprocesses 4 --dist worksteal

openapi: $(BIN)/.installed  ## regenerate the committed openapi.json from the app
	$(BIN)/python -m service.openapi_export openapi.json

bench: $(BIN)/.installed  ## every benchmark, each printing a table
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .dealscore .pytest_cache .mypy_cache .ruff_cache
