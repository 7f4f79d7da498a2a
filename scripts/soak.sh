#!/usr/bin/env bash
# Load and soak test of `mmp serve`, on loopback only, bounded in time.
#   ./scripts/soak.sh              5 minutes, 256 connections
#   ./scripts/soak.sh 30 64        30 s, 64 connections
# Starts a release server on a free port with the fixtures' model, runs
# examples/loadgen.rs (a mix of small and large, good and bad requests, each
# answer checked against its own computation), then stops the server with
# SIGTERM. Prints one summary line (requests/s, wrong answers, unexpected
# errors, server RSS a fifth into the run and at its end) and fails on any
# wrong answer, unexpected error, or RSS growth of more than 20 % between the
# two (the first fifth is warm-up: each connection's buffers grow to their
# working size once).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs="${1:-300}"
conns="${2:-256}"
cargo build --release --quiet --bin mmp --example loadgen
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log="$(mktemp)"
target/release/mmp serve --bind "127.0.0.1:$port" --model-dir fixtures/model 2>"$log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 200); do
  curl -fs "http://127.0.0.1:$port/ping" >/dev/null 2>&1 && break
  sleep 0.05
done
set +e
line=$(target/release/examples/loadgen "127.0.0.1:$port" fixtures/model "$secs" "$conns" "$pid")
rc=$?
set -e
echo "$line"
start=$(sed -n 's/.*RSS start \([0-9]*\) KiB.*/\1/p' <<<"$line")
end=$(sed -n 's/.*end \([0-9]*\) KiB.*/\1/p' <<<"$line")
kill -TERM $pid
wait $pid && echo "server exited 0 after SIGTERM" || { echo "server exit code $?"; rc=1; }
if [ -n "$start" ] && [ -n "$end" ] && [ "$end" -gt $((start * 12 / 10 + 1024)) ]; then
  echo "RSS grew from $start KiB to $end KiB"; rc=1
fi
exit $rc
