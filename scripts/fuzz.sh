#!/usr/bin/env bash
# Fuzz every target for a bounded time each and print a summary line per
# target (executions, and whether anything was found). The decoder targets
# check that chunked feeding agrees with whole feeding; `ranges`, that one
# stream cut into ranges on threads answers as one pipeline.
#   ./scripts/fuzz.sh          60 s per target
#   ./scripts/fuzz.sh 20       20 s per target (what CI runs)
#   ./scripts/fuzz.sh 600 csv  one target, 10 minutes
# Installs cargo-fuzz from crates.io if it is missing. The toolchain here is
# stable: RUSTC_BOOTSTRAP=1 lets cargo-fuzz use its -Z flags (sanitizers).
# Memory is bounded by libFuzzer: -rss_limit_mb and -malloc_limit_mb make an
# unbounded allocation a finding. A crash is saved under fuzz/artifacts/ and
# fails the script; turn it into a regression test in src/codec/tests/ (the file of its format).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(csv jsonlines json json_split media ranges)
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
# Quiet when it builds; the whole compiler output when it does not.
build_log="$(mktemp)"
if ! cargo fuzz build -O >"$build_log" 2>&1; then
  cat "$build_log" >&2
  echo "fuzz: the fuzz targets do not build (output above)" >&2
  exit 1
fi
rm -f "$build_log"
# One target: its summary line on stdout, what it found on stderr; fails
# if it found something.
fuzz_one() {
  local t=$1 log leaks=1 runs
  mkdir -p "fuzz/corpus/$t"
  log="$(mktemp)"
  # `ranges` runs threads that outlive an input by design (the engine's
  # reading thread is not joined, and a joined thread's thread-locals are
  # freed after the join returns), so LeakSanitizer's check after an input
  # reports memory still on its way to being freed: leaks are looked for
  # by the decoder targets, and here only agreement with one pipeline.
  # -detect_leaks covers the check after each input; LeakSanitizer's own
  # check when the process exits (ASAN_OPTIONS) would report a reading
  # thread still finishing its last input, more often with the targets
  # side by side: off too.
  [ "$t" != ranges ] || leaks=0
  local result="ok" failed=0
  if ! ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=$leaks" cargo fuzz run -O "$t" -- -max_total_time="$secs" -rss_limit_mb=512 -malloc_limit_mb=256 \
      -max_len=4096 -print_final_stats=1 -detect_leaks="$leaks" >"$log" 2>&1; then
    result="FOUND A PROBLEM (see fuzz/artifacts/$t/)"
    failed=1
    # The panic's own message (which assertion, and its left and right)
    # first: libFuzzer's backtrace after it is long and says less.
    if grep -q 'panicked at' "$log"; then
      echo "fuzz $t: the failing assertion:" >&2
      sed -n '/panicked at/,/^==[0-9]*==/p' "$log" | grep -v '^==[0-9]*==' | head -40 >&2
    fi
    tail -20 "$log" >&2
    sed -n 's/^Test unit written to /fuzz: the input is in /p' "$log" >&2
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  echo "fuzz $t: ${runs:-?} executions in ${secs} s: $result"
  rm -f "$log"
  return $failed
}

# Targets run side by side, one per CPU, each for its whole time: a target
# gets a core as it would alone, and six targets at 20 s take 60 s on two
# CPUs instead of 120 s. Their reports are printed in the targets' order.
parallel=$(nproc 2>/dev/null || echo 1)
status=0
out="$(mktemp -d)"
for ((i = 0; i < ${#targets[@]}; i += parallel)); do
  batch=("${targets[@]:i:parallel}")
  pids=()
  for t in "${batch[@]}"; do
    fuzz_one "$t" >"$out/$t.out" 2>"$out/$t.err" &
    pids+=($!)
  done
  for j in "${!batch[@]}"; do
    t=${batch[j]}
    wait "${pids[j]}" || status=1
    cat "$out/$t.err" >&2
    cat "$out/$t.out"
  done
done
rm -rf "$out"
exit $status
