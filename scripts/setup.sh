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

# docker-compose (or the `docker compose` v2 plugin), where there is Docker:
# SageMaker SDK local mode runs every job through it (tests/container.rs).
if command -v docker >/dev/null 2>&1 &&
  ! docker compose version 2>/dev/null | grep -q v2 &&
  ! command -v docker-compose >/dev/null 2>&1; then
  echo "setup: installing docker-compose"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose
fi

# The SageMaker Python SDK v2 in .venv-sdk/ (git-ignored), for the local-mode
# test. Reinstalled only when tests/sdk/requirements.txt changes.
venv=.venv-sdk
req=tests/sdk/requirements.txt
if ! cmp -s "$req" "$venv/requirements.installed" 2>/dev/null ||
  ! "$venv/bin/python" -c 'import importlib.metadata as m; m.version("sagemaker")' >/dev/null 2>&1; then
  echo "setup: creating $venv with $(grep -v '^#' "$req" | tr '\n' ' ')"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$venv/requirements.installed"
fi

# scikit-learn in .venv-ref/ (git-ignored), the reference the classifier
# tests compare against. Reinstalled only when its requirements change.
venv=.venv-ref
req=tests/reference/requirements.txt
if ! cmp -s "$req" "$venv/requirements.installed" 2>/dev/null ||
  ! "$venv/bin/python" -c 'import sklearn' >/dev/null 2>&1; then
  echo "setup: creating $venv with $(grep -v '^#' "$req" | tr '\n' ' ')"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$venv/requirements.installed"
fi

echo "setup: ok"
