# Two commands on a fresh machine with Python 3.11+:  make run  |  make test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 5000

.PHONY: run test lint install clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed; run e.g. 'make PYTHON=python3.12 run'"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Migrate the embedded SQLite database, seed the Yueyang demo, serve on http://$(HOST):$(PORT)
run: $(STAMP)
	$(BIN)/carbon-points db upgrade
	$(BIN)/carbon-points demo seed
	$(BIN)/carbon-points serve --host $(HOST) --port $(PORT)

## The test suite (SQLite + in-process store; set TEST_DATABASE_URL / TEST_REDIS_URL for PostgreSQL + Redis)
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) instance *.egg-info .pytest_cache .ruff_cache
