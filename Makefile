# Two commands do all set-up on a machine with Python 3.11+ and make:
#   make run    import a generated sample package through the whole stack
#   make test   ruff, mypy and pytest against real Redis, worker and database
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAMPLE_GOODS ?= 2000
SAMPLE_DIR := var/sample-package

.PHONY: run test lint typecheck pytest install migrate worker stop-redis clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP)
	$(BIN)/python manage.py migrate --noinput -v0

run: migrate
	$(BIN)/python -m config.stack --goods $(SAMPLE_GOODS) --sample-dir $(SAMPLE_DIR) $(if $(ONCE),--once)

worker: migrate
	$(BIN)/celery -A worker.app worker -l info

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy .

pytest: $(STAMP)
	$(BIN)/python -m pytest

test: lint typecheck pytest

stop-redis: $(STAMP)
	$(BIN)/python -m config.embedded_redis stop

clean: stop-redis
	rm -rf var
