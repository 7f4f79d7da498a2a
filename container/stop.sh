#!/usr/bin/env bash
# Stop and remove the container start.sh started for IMAGE, then remove the
# image. The stop is SageMaker's: SIGTERM, and SIGKILL only after 30 s; the
# server drains its in-flight requests and exits 0 well before.
#
#   ./container/stop.sh IMAGE
#
# Environment: CONTAINER (the name start.sh used, if it was set there too),
# KEEP_IMAGE=1 to keep the image.
set -euo pipefail

me=$(basename "$0")
usage() {
  cat <<USAGE
usage: $me IMAGE

Stops (SIGTERM, SIGKILL after 30 s) and removes the container that
start.sh IMAGE started, then removes IMAGE (KEEP_IMAGE=1 keeps it).
USAGE
}
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") usage >&2; exit 2 ;;
esac
[ $# -eq 1 ] || { usage >&2; exit 2; }
image=$1
name=${CONTAINER:-$(printf '%s' "$image" | tr -c 'a-zA-Z0-9_.-' '-')-serve}

command -v docker >/dev/null 2>&1 || { echo "$me: docker is not on PATH" >&2; exit 127; }

if docker container inspect "$name" >/dev/null 2>&1; then
  if [ "$(docker inspect -f '{{.State.Running}}' "$name")" = true ]; then
    echo "$me: stopping $name (SIGTERM; SIGKILL after 30 s)" >&2
    docker stop -t 30 "$name" >/dev/null
  fi
  echo "$me: $name exited with code $(docker inspect -f '{{.State.ExitCode}}' "$name")" >&2
  docker rm "$name" >/dev/null
else
  echo "$me: no container $name" >&2
fi

if [ "${KEEP_IMAGE:-}" != 1 ]; then
  if docker image inspect "$image" >/dev/null 2>&1; then
    docker rmi "$image" >/dev/null
    echo "$me: removed image $image" >&2
  else
    echo "$me: no image $image" >&2
  fi
fi
