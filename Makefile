# The two README commands: `make demo` and `make test`. Each creates .venv and installs first.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/kstream demo wordcount

# Broker tests mostly wait on Kafka: three workers share one broker (started by the kstream
# pytest plugin); tests that run their own broker form one group on one worker.
test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 3 --dist loadgroup

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(VENV)/bin/python bench/stateless.py

clean:
	rm -rf $(VENV) .pytest_cache
