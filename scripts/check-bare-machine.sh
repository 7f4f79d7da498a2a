#!/usr/bin/env bash
# Check that scripts/setup.sh turns a bare Debian into a machine with every
# tool the tests call, so a missing step shows up here and not on a user's
# machine.
#
#   sudo ./scripts/check-bare-machine.sh [MIRROR]   (default http://deb.debian.org/debian)
#
# It debootstraps a minimal bookworm root (--variant=minbase) into a
# temporary folder, copies the repository in (tracked and untracked files,
# without target/ or .venv-sdk/), runs scripts/setup.sh there under chroot,
# runs it a second time (which must install nothing), then checks each tool.
#
# What it covers: the apt part of setup.sh (procps, mount, curl, file, gcc,
# libc6-dev, python3, python3-venv, and the docker-compose branch, taken
# with a stand-in `docker` that has no compose plugin) and the SDK venv
# (pip install from the Python package index); static linking is checked
# with a C program built with -static-pie, as Rust's crt-static build links.
# What it cannot cover: there is no Rust toolchain and no Docker engine in
# the root (the README says to bring them), so no cargo build or test runs.
#
# Needs root (debootstrap, chroot, mount), debootstrap (apt-get install
# debootstrap), network access to the Debian mirror and PyPI, ~1 GB of
# space and a few minutes. Not run by CI: it is too slow.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mirror=${1:-http://deb.debian.org/debian}
me=$(basename "$0")

[ "$(id -u)" -eq 0 ] || { echo "$me: needs root (debootstrap, chroot)" >&2; exit 1; }
type -P debootstrap >/dev/null || { echo "$me: debootstrap not found (apt-get install debootstrap)" >&2; exit 127; }

start=$(date +%s)
root=$(mktemp -d "${TMPDIR:-/var/tmp}/mmp-bare.XXXXXX")
cleanup() {
  for m in "$root/proc"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m"
  done
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT

echo "$me: debootstrap bookworm (minbase) into $root"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 ||
  { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
echo "$me: debootstrap took $(($(date +%s) - start)) s"

mount -t proc proc "$root/proc"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# pip on this machine may need its own CA bundle (PIP_CERT) to reach the
# index; give the root a copy, under a name of its own (installing
# ca-certificates in the root rewrites /etc/ssl/certs).
pip_env=()
if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then
  cp "$PIP_CERT" "$root/etc/check-bare-machine-pip-ca.crt"
  pip_env+=("PIP_CERT=/etc/check-bare-machine-pip-ca.crt")
fi
[ -n "${PIP_INDEX_URL:-}" ] && pip_env+=("PIP_INDEX_URL=$PIP_INDEX_URL")

mkdir "$root/repo"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard |
  tar --null -T - -c) | tar -x -C "$root/repo"

# A stand-in `docker` without the compose plugin, so setup.sh takes its
# docker-compose branch (there is no engine to run in the root).
cat >"$root/usr/local/bin/docker" <<'STUB'
#!/bin/sh
echo "docker: '$1' is not a docker command (stand-in for check-bare-machine.sh)" >&2
exit 1
STUB
chmod +x "$root/usr/local/bin/docker"

in_root() {
  env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 "${pip_env[@]}" chroot "$root" /bin/bash -c "$1"
}

t=$(date +%s)
echo "$me: scripts/setup.sh (first run)"
in_root 'cd /repo && ./scripts/setup.sh'
echo "$me: first run took $(($(date +%s) - t)) s"

echo "$me: scripts/setup.sh (second run: must install nothing)"
second=$(in_root 'cd /repo && ./scripts/setup.sh')
echo "$second"
if grep -q 'installing\|creating' <<<"$second"; then
  echo "$me: FAIL: the second run installed something again" >&2
  exit 1
fi

echo "$me: checking the tools the tests call"
in_root '
set -u
fail=0
check() { if eval "$2" >/dev/null 2>&1; then echo "  ok    $1"; else echo "  MISSING $1"; fail=1; fi; }
check "kill (the program)"   "type -P kill"
check "mount, umount"        "type -P mount && type -P umount"
check "mkfifo"               "type -P mkfifo"
check "curl"                 "type -P curl"
check "file"                 "type -P file"
check "cc"                   "type -P cc"
check "docker-compose"       "type -P docker-compose"
check "static-pie link (libc6-dev)" "printf \"int main(void){return 0;}\\n\" | cc -x c - -static-pie -o /tmp/s && file -b /tmp/s | grep -q static-pie"
check "python3 -m venv"      "python3 -m venv /tmp/v && /tmp/v/bin/python -c \"import sys\""
check "SageMaker SDK v2 in .venv-sdk" "/repo/.venv-sdk/bin/python -c \"import sagemaker, sys; sys.exit(not sagemaker.__version__.startswith(\\\"2.\\\"))\""
exit $fail
' || { echo "$me: FAIL" >&2; exit 1; }

echo "$me: ok in $(($(date +%s) - start)) s"
