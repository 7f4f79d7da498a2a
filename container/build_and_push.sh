#!/usr/bin/env bash
# Build the image and push it to Amazon ECR, as the AWS sample's
# build_and_push.sh does: the account from STS, the region from the AWS CLI's
# configuration (default us-west-2), the ECR repository created if missing,
# `docker login` with an ECR token, then build, tag and push.
#
#   ./container/build_and_push.sh IMAGE        e.g. mmkv, or mmkv:v2
#
# Pushes ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME:TAG (TAG defaults to
# latest), the URI to give SageMaker (image_uri / PrimaryContainer.Image).
# Needs the AWS CLI with credentials allowed to use ECR, and docker.
set -euo pipefail

me=$(basename "$0")
usage() {
  cat <<USAGE
usage: $me IMAGE

Builds IMAGE (container/build.sh) and pushes it to
ACCOUNT.dkr.ecr.REGION.amazonaws.com/IMAGE (tag: IMAGE's, else latest),
creating the ECR repository if it does not exist. The account comes from
'aws sts get-caller-identity', the region from 'aws configure get region'
(default us-west-2).
USAGE
}
die() {
  local code=$1
  shift
  echo "$me: $*" >&2
  exit "$code"
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") usage >&2; exit 2 ;;
esac
[ $# -eq 1 ] || { usage >&2; exit 2; }
image=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# NAME[:TAG] -> ECR repository NAME, tag TAG (a ':' after the last '/').
name=$image
tag=latest
if [[ ${image##*/} == *:* ]]; then
  name=${image%:*}
  tag=${image##*:}
fi

command -v aws >/dev/null 2>&1 ||
  die 127 "the AWS CLI ('aws') is not on PATH. Install it (https://aws.amazon.com/cli/), then configure credentials ('aws configure', or AWS_PROFILE / AWS_ACCESS_KEY_ID)."
command -v docker >/dev/null 2>&1 ||
  die 127 "docker is not on PATH."

# The seed exits 255 when the caller's identity cannot be read.
if ! account=$(aws sts get-caller-identity --query Account --output text); then
  die 255 "'aws sts get-caller-identity' failed (its error is above): no usable AWS credentials? Run 'aws configure' or set AWS_PROFILE, then retry."
fi
[[ $account =~ ^[0-9]{12}$ ]] ||
  die 255 "'aws sts get-caller-identity' gave '$account', not a 12-digit account id."

region=$(aws configure get region || true)
region=${region:-us-west-2}

registry="$account.dkr.ecr.$region.amazonaws.com"
fullname="$registry/$name:$tag"

# The repository, if it does not exist yet.
if ! aws ecr describe-repositories --repository-names "$name" --region "$region" >/dev/null 2>&1; then
  echo "$me: creating the ECR repository $name in $region" >&2
  aws ecr create-repository --repository-name "$name" --region "$region" >/dev/null
fi

# An ECR token (12 hours) for docker.
aws ecr get-login-password --region "$region" |
  docker login --username AWS --password-stdin "$registry"

"$here/build.sh" "$image"

docker tag "$image" "$fullname"
docker push "$fullname"
echo "$me: pushed $fullname"
