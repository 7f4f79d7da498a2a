#!/usr/bin/env bash
# Run the image as SageMaker does for an endpoint (`IMAGE serve`), detached,
# with a model directory mounted read-only at /opt/ml/model, and wait until
# /ping answers 200.
#
#   ./container/start.sh IMAGE [MODEL_DIR]
#
# MODEL_DIR holds model.json (default: the repository's fixtures/model).
# Environment:
#   PORT       host port to publish 8080 on (default 8080; 0 = any free port)
#   BIND       host address to publish on (default 127.0.0.1)
#   CONTAINER  container name (default: derived from IMAGE, NAME-serve)
#   TIMEOUT    seconds to wait for /ping (default 30)
# Any MMP_* / SAGEMAKER_* / MODEL_SERVER_* / RUST_LOG variable set here is
# passed to the container. Stop it with ./container/stop.sh IMAGE.
set -euo pipefail

me=$(basename "$0")
usage() {
  cat <<USAGE
usage: $me IMAGE [MODEL_DIR]

Runs 'IMAGE serve' detached, MODEL_DIR (default: fixtures/model) mounted
read-only at /opt/ml/model, port 8080 published on \${BIND:-127.0.0.1}:\${PORT:-8080}
(PORT=0: any free port), and waits for GET /ping to answer 200.
USAGE
}
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") usage >&2; exit 2 ;;
esac
[ $# -le 2 ] || { usage >&2; exit 2; }
image=$1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
model_dir=${2:-$root/fixtures/model}
[ -d "$model_dir" ] || { echo "$me: $model_dir is not a directory" >&2; exit 2; }
model_dir=$(cd "$model_dir" && pwd)
[ -f "$model_dir/model.json" ] || echo "$me: warning: $model_dir has no model.json; /ping will not answer 200" >&2

command -v docker >/dev/null 2>&1 || { echo "$me: docker is not on PATH" >&2; exit 127; }
command -v curl >/dev/null 2>&1 || { echo "$me: curl is not on PATH (needed to wait for /ping)" >&2; exit 127; }

port=${PORT:-8080}
[ "$port" = 0 ] && port=
bind=${BIND:-127.0.0.1}
name=${CONTAINER:-$(printf '%s' "$image" | tr -c 'a-zA-Z0-9_.-' '-')-serve}
timeout=${TIMEOUT:-30}

env_args=()
while IFS='=' read -r var _; do
  case "$var" in
    MMP_* | SAGEMAKER_* | MODEL_SERVER_* | RUST_LOG) env_args+=(-e "$var") ;;
  esac
done < <(env)

if ! cid=$(docker run -d --name "$name" \
  -p "$bind:$port:8080" \
  -v "$model_dir:/opt/ml/model:ro" \
  "${env_args[@]}" \
  "$image" serve); then
  # A failed start (port taken, say) can leave a created container behind,
  # which would block the next start.sh with a name conflict.
  if [ "$(docker inspect -f '{{.State.Status}}' "$name" 2>/dev/null || true)" = created ]; then
    docker rm "$name" >/dev/null || true
  fi
  echo "$me: could not start $image (see docker's message above)" >&2
  exit 1
fi

addr=$(docker port "$cid" 8080/tcp | head -n 1)
addr=${addr/0.0.0.0/127.0.0.1}
deadline=$((SECONDS + timeout))
until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$addr/ping" || true)" = 200 ]; do
  if [ "$(docker inspect -f '{{.State.Running}}' "$cid")" != true ]; then
    echo "$me: the container exited with code $(docker inspect -f '{{.State.ExitCode}}' "$cid"); its log:" >&2
    docker logs "$cid" >&2 || true
    docker rm "$cid" >/dev/null || true
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "$me: /ping did not answer 200 within ${timeout}s; the log so far:" >&2
    docker logs "$cid" >&2 || true
    exit 1
  fi
  sleep 0.1
done

cat <<DONE
$me: $image is serving at http://$addr (container $name)
  curl -H 'Content-Type: text/csv' --data-binary \$'1,2,3\\n4,5,6\\n' http://$addr/invocations
  curl -H 'Content-Type: application/jsonlines' -H 'Accept: application/jsonlines' --data-binary '[1,2,3]' http://$addr/invocations
  curl http://$addr/execution-parameters
  docker logs -f $name
  $(dirname "$0")/stop.sh $image
DONE
