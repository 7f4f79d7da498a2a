#!/usr/bin/env bash
# Run a training job locally as SageMaker does: OPT_ML_DIR mounted at
# /opt/ml, `IMAGE train`; the exit code is the job's (0 Completed, else
# Failed, with the reason in OPT_ML_DIR/output/failure).
#
#   ./container/train.sh IMAGE OPT_ML_DIR
#
# OPT_ML_DIR holds input/config/{hyperparameters,inputdataconfig}.json and
# input/data/<channel>/ (e.g. input/data/training/*.csv, the label first);
# the model is written to OPT_ML_DIR/model/model.json. The files are written
# by root, as in SageMaker. Extra `docker run` arguments: DOCKER_RUN_ARGS.
set -euo pipefail

me=$(basename "$0")
usage() {
  cat <<USAGE
usage: $me IMAGE OPT_ML_DIR

Runs 'IMAGE train' with OPT_ML_DIR mounted at /opt/ml and exits with the
job's exit code. On failure, OPT_ML_DIR/output/failure says why.
USAGE
}
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
esac
[ $# -eq 2 ] || { usage >&2; exit 2; }
image=$1
[ -d "$2" ] || { echo "$me: $2 is not a directory" >&2; exit 2; }
opt_ml=$(cd "$2" && pwd)

command -v docker >/dev/null 2>&1 || { echo "$me: docker is not on PATH" >&2; exit 127; }

status=0
# shellcheck disable=SC2086 # DOCKER_RUN_ARGS is meant to be word-split
docker run --rm ${DOCKER_RUN_ARGS:-} -v "$opt_ml:/opt/ml" "$image" train || status=$?
if [ "$status" -eq 0 ]; then
  echo "$me: training completed; model in $opt_ml/model" >&2
else
  echo "$me: training failed with exit code $status" >&2
  if [ -f "$opt_ml/output/failure" ]; then
    echo "$me: output/failure:" >&2
    cat "$opt_ml/output/failure" >&2
  fi
fi
exit "$status"
