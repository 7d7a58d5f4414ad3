# selfheal — every command a developer, CI or a user needs. Python tools (moto, cargo-lambda,
# cfn-lint) are installed into .venv at pinned versions by `make setup`; the Rust toolchain
# is the machine's.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV    := .venv
STAMP   := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help setup demo test unit integration lint fmt template-check bench build clean

help:
	@echo "make demo    start the AWS emulator, run every function through the Lambda runtime emulator, show before/after"
	@echo "make test    lint, template checks, unit and integration tests (emulator started and stopped for you)"
	@echo "make lint    cargo fmt --check and clippy -D warnings"
	@echo "make setup   install the pinned Python tools into $(VENV)"

setup: $(STAMP)

$(STAMP): requirements.txt requirements.lock
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements.txt -c requirements.lock
	touch $@

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

template-check: setup
	cfn-lint template.yaml

# Unit tests need no AWS; integration tests get a fresh emulator that is always stopped.
test: setup lint template-check
	scripts/with-moto.sh --state .moto/test cargo test --workspace

unit:
	cargo test --workspace --exclude selfheal-tests

integration: setup
	scripts/with-moto.sh --state .moto/test cargo test -p selfheal-tests

demo: setup
	scripts/with-moto.sh --state .moto/demo $(VENV)/bin/python scripts/demo.py

clean:
	rm -rf .moto target/lambda
