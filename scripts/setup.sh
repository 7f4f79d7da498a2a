#!/usr/bin/env bash
# Install what the tests need on a fresh machine of this project's kind
# (Rust toolchain, Python 3 and a Docker engine come with the machine).
# Idempotent: each step checks first and does nothing when already done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian packages: `kill` (procps) for the signal tests.
need=()
command -v kill >/dev/null 2>&1 || need+=(procps)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
echo "setup: ok"
