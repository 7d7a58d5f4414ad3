#!/usr/bin/env bash
# Runs a command with a fresh moto server: starts it, exports the standard AWS variables that
# point the SDK at it (fake credentials), runs the command, and always stops the server,
# also when the command fails or is interrupted. Exit status is the command's.
#   scripts/with-moto.sh [--state DIR] COMMAND...
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.moto
if [ "${1:-}" = "--state" ]; then dir=$2; shift 2; fi
trap 'scripts/moto.sh stop "$dir"' EXIT INT TERM
endpoint=$(scripts/moto.sh start "$dir")
export AWS_ENDPOINT_URL="$endpoint"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
# Never read a developer's real profile or instance metadata while pointed at the emulator.
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
export SELFHEAL_EMULATOR_REQUEST_LOG="$PWD/$dir/requests.jsonl"
echo "emulator: $endpoint (state in $dir)" >&2
"$@"
