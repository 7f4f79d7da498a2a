#!/usr/bin/env bash
# Run every test of the project, after installing what the tests need.
# Idempotent: a second run installs nothing. Used by .ci/run and by hand:
#   ./scripts/test.sh            all tests
#   ./scripts/test.sh serve_http  extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh system
# The Python venvs (downloads, mostly) are made while cargo builds the tests.
./scripts/setup.sh venvs &
venvs=$!
cargo test --all-targets --no-run "$@"
wait "$venvs"
cargo test --all-targets "$@"
