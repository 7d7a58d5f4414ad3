# selfheal — every command a developer, CI or a user needs. Python tools (moto, cargo-lambda,
# cfn-lint) are installed into .venv at pinned versions by `make setup`; the Rust toolchain
# is the machine's.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV    := .venv
STAMP   := $(VENV)/.installed
# aws-sam-cli and checkov each pin dependencies that conflict with moto's and with each
# other's, so each lives in a venv of its own.
SAM_VENV     := .venv-sam
CHECKOV_VENV := .venv-checkov
ARCH    ?= x86_64
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0
FUNCTIONS := reboot-instance restore-object replay-transactions scale-group

.PHONY: help setup setup-iac demo test unit integration soak lint fmt template-check bench eval build clean batch-verify-job checksum-job

help:
	@echo "make demo    start the AWS emulator, run every function through the Lambda runtime emulator, show before/after"
	@echo "make test    lint, template checks, unit and integration tests (emulator started and stopped for you)"
	@echo "make lint    cargo fmt --check and clippy -D warnings"
	@echo "make setup   install the pinned Python tools into $(VENV)"
	@echo "make batch-verify-job / checksum-job   S3 Batch Operations jobs over an inventory (README, restore-object at bucket scale)"

setup: $(STAMP)

$(STAMP): requirements.txt requirements.lock
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements.txt -c requirements.lock
	touch $@

setup-iac: $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed

$(SAM_VENV)/.installed: tools/sam.txt tools/sam.lock
	python3 -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --disable-pip-version-check -q -r tools/sam.txt -c tools/sam.lock
	touch $@

$(CHECKOV_VENV)/.installed: tools/checkov.txt tools/checkov.lock
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --disable-pip-version-check -q -r tools/checkov.txt -c tools/checkov.lock
	touch $@

fmt:
	cargo fmt --all

# Every cargo command runs with --locked: CI and a fresh clone build exactly Cargo.lock.
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	python3 scripts/check_feature_pins.py

# Template checks need no AWS account: a region and dummy credentials are enough.
template-check: setup setup-iac
	cfn-lint template.yaml
	AWS_ACCESS_KEY_ID=dummy AWS_SECRET_ACCESS_KEY=dummy AWS_DEFAULT_REGION=us-east-1 \
	  $(SAM_VENV)/bin/sam validate --lint --region us-east-1 --template template.yaml
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation --quiet --compact \
	  --skip-download --config-file tools/checkov.yaml

# Unit tests need no AWS; integration tests get a fresh emulator that is always stopped.
# The evaluation's tests run in a build of their own: its plotting crates would otherwise
# change features under the AWS SDK and make cargo compile the SDK a second time for the demo.
test: setup lint template-check
	scripts/with-moto.sh --state .moto/test cargo test --workspace --exclude selfheal-eval --locked
	cargo test -p selfheal-eval --locked

unit:
	cargo test --workspace --exclude selfheal-tests --exclude selfheal-eval --locked
	cargo test -p selfheal-eval --locked

integration: setup
	scripts/with-moto.sh --state .moto/test cargo test -p selfheal-tests --locked

# Long runs, with a small version of each in `make test`: the full alarm storm (1,000
# events over 200 targets in 20 groups against the emulator's DynamoDB ledger), a million
# fuzzed events per parser (alarm shapes, S3/EventBridge object events and scrubs, SQS), and
# replay-transactions' no-loss test over 20 seeds per DLQ type (3 in make test).
soak: setup
	mkdir -p target && : > target/soak.log
	SELFHEAL_STORM_EVENTS=1000 SELFHEAL_STORM_TARGETS=200 SELFHEAL_STORM_GROUPS=20 \
	  scripts/with-moto.sh --state .moto/soak cargo test -p selfheal-tests --locked -- guardrails:: --nocapture --test-threads 1 2>&1 | tee -a target/soak.log
	SELFHEAL_FUZZ_CASES=1000000 cargo test --locked -p selfheal-core -p restore-object -p replay-transactions -p selfheal-lambda --lib fuzzed -- --nocapture 2>&1 | tee -a target/soak.log
	SELFHEAL_TOKEN_CASES=100000 cargo test --locked -p selfheal-core --lib approval:: -- --nocapture 2>&1 | tee -a target/soak.log
	SELFHEAL_NOLOSS_SEEDS=20 scripts/with-moto.sh --state .moto/soak cargo test -p selfheal-tests --locked -- replay_transactions::no_transaction_is_lost --nocapture 2>&1 | tee -a target/soak.log
	python3 scripts/soak_report.py target/soak.log > bench/SOAK.md

# DEMO_STATE: the emulator's state dir (one per person or helper running demos side by side).
DEMO_STATE ?= .moto/demo
demo: setup
	scripts/with-moto.sh --state $(DEMO_STATE) $(VENV)/bin/python scripts/demo.py

# Release packages, one zip per function: target/lambda/<function>/bootstrap.zip. Only the
# host target (x86_64) is installed here; arm64 needs the aarch64 target in your rustup and
# never triggers a download.
build: setup
	@case "$(ARCH)" in \
	  x86_64) triple=x86_64-unknown-linux-gnu ;; \
	  arm64)  triple=aarch64-unknown-linux-gnu ;; \
	  *) echo "ARCH must be x86_64 or arm64, not $(ARCH)" >&2; exit 2 ;; \
	esac; \
	if ! rustup target list --installed 2>/dev/null | grep -qx "$$triple"; then \
	  echo "make build ARCH=$(ARCH): the Rust target $$triple is not installed in this toolchain." >&2; \
	  echo "Install it yourself (rustup target add $$triple) on a machine that may download toolchains, or use ARCH=x86_64." >&2; \
	  exit 2; \
	fi; \
	compiler=cargo; [ "$(ARCH)" = arm64 ] && [ "$$(uname -m)" != aarch64 ] && compiler=cargo-zigbuild; \
	cargo lambda build --release --locked --compiler $$compiler --target $$triple --output-format zip $(addprefix --bin ,$(FUNCTIONS)); \
	for f in $(FUNCTIONS); do printf '%-22s %s bytes\n' "$$f" "$$(stat -c %s target/lambda/$$f/bootstrap.zip)"; done

# Benchmarks (never fail on timing): writes bench/RESULTS.md.
bench: setup
	scripts/with-moto.sh --state .moto/bench $(VENV)/bin/python bench/run.py

# The AI evaluation: replays labelled synthetic traces, writes eval/results/.
# Labelled real-world series in NAB layout (data/, labels/): scored when the folder exists;
# `make eval NAB=DIR` scores another one, `make eval NAB=` skips that part.
NAB ?= $(if $(wildcard ../shared/nab/labels/combined_windows.json),../shared/nab,)
eval:
	cargo run --release -p selfheal-eval -- --out eval/results $(if $(NAB),--nab $(NAB),)

# S3 Batch Operations jobs for restore-object over an inventory manifest (README: restore-object
# at bucket scale). Each prints the CreateJob request to $(JOB_SPEC); RUN=1 also creates the
# job with the AWS CLI. MANIFEST=s3://bucket/.../manifest.json (or a bucket,key CSV), ETAG=its
# ETag (read with head-object when empty), ACCOUNT, ROLE_ARN (stack output
# BatchOperationsRoleArn), REPORT=s3://<ChecksumReportBucketName>/<ChecksumReportPrefix>.
# batch-verify-job: FUNCTION_ARN, DRY_RUN (default true). checksum-job: ALGORITHM (SHA256),
# CHECKSUM_TYPE (FULL_OBJECT); its report starts the two-pass verification.
JOB_SPEC ?= target/batch-job.json
DRY_RUN ?= true
ALGORITHM ?= SHA256
CHECKSUM_TYPE ?= FULL_OBJECT
batch-job-etag = $(or $(ETAG),$(shell m='$(MANIFEST)'; m=$${m#s3://}; aws s3api head-object --bucket "$${m%%/*}" --key "$${m#*/}" --query ETag --output text 2>/dev/null))
batch-verify-job:
	@mkdir -p $(dir $(JOB_SPEC))
	cargo run -q --locked -p restore-object --example batch-job -- lambda-invoke '$(ACCOUNT)' '$(ROLE_ARN)' '$(MANIFEST)' '$(batch-job-etag)' '$(REPORT)' '$(FUNCTION_ARN)' '$(DRY_RUN)' > $(JOB_SPEC)
	@cat $(JOB_SPEC)
	@if [ "$(RUN)" = 1 ]; then aws s3control create-job --cli-input-json file://$(JOB_SPEC); else echo "(RUN=1 creates it: aws s3control create-job --cli-input-json file://$(JOB_SPEC))"; fi
checksum-job:
	@mkdir -p $(dir $(JOB_SPEC))
	cargo run -q --locked -p restore-object --example batch-job -- compute-checksum '$(ACCOUNT)' '$(ROLE_ARN)' '$(MANIFEST)' '$(batch-job-etag)' '$(REPORT)' '$(ALGORITHM)' '$(CHECKSUM_TYPE)' > $(JOB_SPEC)
	@cat $(JOB_SPEC)
	@if [ "$(RUN)" = 1 ]; then aws s3control create-job --cli-input-json file://$(JOB_SPEC); else echo "(RUN=1 creates it: aws s3control create-job --cli-input-json file://$(JOB_SPEC))"; fi

clean:
	rm -rf .moto target/lambda
