# Quick start: `make demo` (train + evaluate on Fashion-MNIST), `make test` (the test suite; `make test-fast` skips the slow ones).
# Both run scripts/setup.sh first, which creates .venv and installs everything.
.PHONY: setup demo test test-fast lint bench

setup:
	./scripts/setup.sh

demo: setup
	.venv/bin/mnv3 train

test: setup
	.venv/bin/python -m pytest -n 2 tests

test-fast: setup
	.venv/bin/python -m pytest -n 2 -m "not slow" tests

lint: setup
	.venv/bin/ruff check .
