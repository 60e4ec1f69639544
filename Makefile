# The two commands of the README: `make serve` and `make test`.
VENV ?= .venv
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup serve test lint unit

setup:
	./scripts/setup.sh

serve: setup
	$(VENV)/bin/llm-gateway serve --profile dev

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The whole suite: lint, types, unit tests and the real-engine tests (pytest exit 5,
# "no tests collected", fails the target like any other non-zero exit).
test: setup lint
	./scripts/services.sh
	./scripts/browser.sh
	./scripts/js-client.sh
	$(VENV)/bin/python -m pytest -p no:cacheprovider tests

unit: setup
	./scripts/browser.sh
	$(VENV)/bin/python -m pytest -m "not engine" tests
