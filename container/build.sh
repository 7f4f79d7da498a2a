#!/usr/bin/env bash
# Build the container image: the statically linked `mmp` on the host, then a
# `FROM scratch` image holding only that binary (container/Dockerfile).
# Needs no registry: nothing is pulled.
#
#   ./container/build.sh IMAGE        e.g. ./container/build.sh mmkv
#
# Environment:
#   CARGO              cargo command (default: cargo)
#   CARGO_TARGET_DIR   honoured, as cargo does (default: target/)
#   DOCKER_BUILD_ARGS  extra arguments for `docker build` (word-split)
set -euo pipefail

usage() {
  cat <<USAGE
usage: $(basename "$0") IMAGE

Builds the static mmp binary (cargo, glibc crt-static, release) and the
FROM-scratch image IMAGE (a name, optionally :tag; e.g. mmkv).
USAGE
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") usage >&2; exit 2 ;;
esac
[ $# -eq 1 ] || { usage >&2; exit 2; }
image=$1

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=x86_64-unknown-linux-gnu

command -v docker >/dev/null 2>&1 || { echo "$(basename "$0"): docker not found on PATH" >&2; exit 127; }

echo "build.sh: building the static binary (release, $target, crt-static)" >&2
# --target keeps RUSTFLAGS away from build scripts and proc macros (which
# must stay dynamic) and puts the binary in its own directory. Debug info is
# stripped whatever the release profile says (symbols stay, for backtraces):
# it would triple the image.
(cd "$root" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_STRIP=debuginfo \
  "${CARGO:-cargo}" build --release --target "$target" --bin mmp)
target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir=$root/$target_dir ;; esac
bin=$target_dir/$target/release/mmp

# Refuse a binary that would not run in an empty image.
if command -v file >/dev/null 2>&1; then
  desc=$(file -b "$bin")
  case "$desc" in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) echo "build.sh: $bin is not statically linked: $desc" >&2; exit 1 ;;
  esac
fi

# The build context is a fresh directory holding the binary and the
# Dockerfile only (the repository, with target/, would be gigabytes).
ctx=$(mktemp -d "${TMPDIR:-/tmp}/mmp-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/mmp"
cp "$root/container/Dockerfile" "$ctx/Dockerfile"

echo "build.sh: docker build -t $image" >&2
# shellcheck disable=SC2086 # DOCKER_BUILD_ARGS is meant to be word-split
docker build ${DOCKER_BUILD_ARGS:-} -t "$image" "$ctx"
echo "build.sh: built $image" >&2
