#!/usr/bin/env bash
# Runs every test: the workspace's unit, integration and property tests (including the
# crash and corruption tests, and the playground in headless Chromium), then every
# cargo-fuzz target briefly.
#   FUZZ_SECONDS=N   seconds per fuzz target (default 15; 0 skips fuzzing)
#   LOCKSTEP_REQUIRE_FUZZ=1  a missing nightly toolchain or cargo-fuzz fails the run
#                    instead of skipping the fuzzing (.ci/run sets it)
#   LOW_DISK=1       remove the test build (target/debug and the harness's artifact build)
#                    before fuzzing, so the peak is one build, not two (.ci/run sets it)
# Every fuzz crate builds into one directory, target/fuzz, so their common dependencies
# build once.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The harness builds the real filter .wasm for its tests.
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || echo "warning: could not add the wasm32-unknown-unknown target"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== scripts/build-playground.sh (the page the browser test loads)"
if ! scripts/build-playground.sh; then
  # Never test a page left from an older build.
  rm -rf dist/playground
  echo "warning: the playground did not build; its browser test will say so"
fi

echo "== cargo test --workspace"
set +e
cargo test --workspace 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')

fuzz_status=0
FUZZ_SECONDS="${FUZZ_SECONDS:-15}"
fuzz_target_dir="$PWD/target/fuzz"
if [ "${LOW_DISK:-0}" = 1 ]; then
  echo "== LOW_DISK: removing the test build before fuzzing ($(du -sh target 2>/dev/null | cut -f1) in target/)"
  rm -rf target/debug target/lockstep-harness-artifacts target/harness-wasm target/wasm32-unknown-unknown/playground
fi
if [ "$FUZZ_SECONDS" != 0 ]; then
  if cargo +nightly --version >/dev/null 2>&1 && cargo +nightly fuzz --version >/dev/null 2>&1; then
    for dir in crates/*/fuzz plugins/*/fuzz; do
      [ -f "$dir/Cargo.toml" ] || continue
      for target in $(cargo +nightly fuzz list --fuzz-dir "$dir"); do
        echo "== fuzz $dir $target (${FUZZ_SECONDS}s)"
        if ! cargo +nightly fuzz run --fuzz-dir "$dir" --target-dir "$fuzz_target_dir" "$target" -- -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=4096 >"$log.fuzz" 2>&1; then
          tail -n 40 "$log.fuzz"
          echo "fuzz target $target in $dir FAILED"
          fuzz_status=1
        else
          grep -E '^Done [0-9]+ runs' "$log.fuzz" || tail -n 2 "$log.fuzz"
        fi
      done
    done
    rm -f "$log.fuzz"
  elif [ "${LOCKSTEP_REQUIRE_FUZZ:-0}" = 1 ]; then
    echo "== fuzz: FAILED: LOCKSTEP_REQUIRE_FUZZ=1 but the nightly toolchain or cargo-fuzz is missing"
    fuzz_status=1
  else
    echo "== fuzz: skipped (needs the nightly toolchain and cargo-fuzz; .ci/run installs both)"
  fi
fi

echo "== disk: $(du -sh target 2>/dev/null | cut -f1) in target/, $(df -h . | awk 'NR==2 {print $4}') free"
echo "tests: $passed passed, $failed failed"
if [ "$status" != 0 ] || [ "$fuzz_status" != 0 ]; then
  exit 1
fi
