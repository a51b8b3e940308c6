# Quick start: `make demo` (train + evaluate on Fashion-MNIST), `make test` (the test suite).
# Both run scripts/setup.sh first, which creates .venv and installs everything.
.PHONY: setup demo test lint bench

setup:
	./scripts/setup.sh

demo: setup
	.venv/bin/mnv3 train

test: setup
	.venv/bin/python -m pytest -n 2 tests

lint: setup
	.venv/bin/ruff check .
