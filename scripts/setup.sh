#!/usr/bin/env bash
# Install what the tests need on a Debian/Ubuntu machine, beyond what must
# already be there: a Rust toolchain (rustup; not installed here) and, for
# the container tests, a Docker engine (not installed here either).
# Idempotent: each step checks first and does nothing when already done;
# `apt-get update` runs only when a package is missing. Installing needs
# root (apt-get) and the Debian and Python package registries.
#
# What it installs, and which tests use it:
#   procps            the `kill` program (tests/faults.rs, tests/train_cli.rs)
#   mount             mount/umount of a tmpfs (tests/faults.rs, full disk)
#   curl              the README's examples (tests/readme.rs), container/start.sh
#   file              container/build.sh's static-binary check
#   gcc, libc6-dev    the linker cargo calls, and the static glibc (libc.a,
#                     rcrt1.o) the crt-static build of container/build.sh links
#   python3, python3-venv   .venv-sdk/ for tests/sdk/local_mode.py
#   docker-compose    SDK local mode, only where Docker is installed
#   .venv-sdk/        the SageMaker Python SDK v2 (tests/sdk/requirements.txt)
#
# scripts/check-bare-machine.sh runs this in a fresh Debian root to prove the
# list is complete.
#
#   ./scripts/setup.sh           everything
#   ./scripts/setup.sh system    the Debian packages only
#   ./scripts/setup.sh venvs     the Python venvs only (scripts/test.sh
#                                makes them while cargo builds the tests)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
part=${1:-all}
case "$part" in
  all | system | venvs) ;;
  *) echo "usage: $0 [system|venvs]" >&2; exit 2 ;;
esac

# A Debian package is installed (not merely known or removed).
installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

if [ "$part" != venvs ]; then
# Debian packages. `type -P` looks for the program itself: `command -v kill`
# finds the shell builtin and always succeeds.
need=()
type -P kill >/dev/null || need+=(procps)
type -P mount >/dev/null && type -P umount >/dev/null || need+=(mount)
type -P curl >/dev/null || need+=(curl)
type -P file >/dev/null || need+=(file)
type -P cc >/dev/null || need+=(gcc)
installed libc6-dev || need+=(libc6-dev)
type -P python3 >/dev/null || need+=(python3)
# `python3 -m venv` needs ensurepip, which Debian ships in python3-venv.
# A python3 not from Debian (e.g. /usr/local) brings its own.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need+=(python3-venv)
fi
# docker-compose (or the `docker compose` v2 plugin), where there is Docker:
# SageMaker SDK local mode runs every job through it (tests/container.rs).
if type -P docker >/dev/null &&
  ! docker compose version 2>/dev/null | grep -q v2 &&
  ! type -P docker-compose >/dev/null; then
  need+=(docker-compose)
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: run as root (apt-get), or install them yourself: apt-get install ${need[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
fi

if [ "$part" != system ]; then

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
fi

echo "setup: ok ($part)"
