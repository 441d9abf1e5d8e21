#!/usr/bin/env bash
# Where the filter's executed wasm instructions go, by the shape of a record's members:
# each line is the cost of adding that one member to a base record (wasmtime fuel, the
# module's own instructions), for the extraction alone and for the whole filter call.
# Manual measuring aid (issue 15); BENCHMARKS.md quotes its output.
#
#   cargo build --release -p lockstep-harness --example filter_bench
#   cargo build -p filter-lockstep --target wasm32-unknown-unknown --profile wasm \
#       --features bench-phases --target-dir target/bench-phases
#   scripts/filter-cost-by-shape.sh target/bench-phases/wasm32-unknown-unknown/wasm/lockstep_filter.wasm
set -euo pipefail
cd "$(dirname "$0")/.."
WASM=${1:?usage: $0 MODULE_BUILT_WITH_bench-phases.wasm}
BENCH=${FILTER_BENCH:-target/release/examples/filter_bench}
TMP=$(mktemp)
trap 'rm -f "$TMP"' EXIT
# fuel LINE N: the Nth-from-last result line's instructions (1: extraction, 2: filter)
fuel() {
  echo "$1" > "$TMP"
  PHASES=1 LINES="$TMP" "$BENCH" "$WASM" 4000 | tail -n "$2" | head -n 1 |
    grep -o '[0-9]* wasm instructions/record' | cut -d' ' -f1
}
BASE='"zzzzzzzzzzzzzzzz":"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"'
e0=$(fuel "{}" 1); f0=$(fuel "{}" 2)
echo "the record {}: extraction $e0, whole filter call $f0 (incl. the host's malloc/free calls)"
be=$(fuel "{$BASE}" 1); bf=$(fuel "{$BASE}" 2)
echo "base {$BASE}: extraction $be, filter $bf"
echo "| member added in front of the base | extraction | filter |"
echo "|---|---|---|"
for m in '"msg":"cache lookup"' '"service":"api"' '"ts":1795000000248' \
  '"time":1795000000.0969334' '"timestamp":"1795000000060272450"' \
  '"http":{"method":"GET","status":200}' '"level":"info"' '"level":30' \
  '"severity_number":5' '"trace_id":"7c11c05dff7b9c8f9a4cbd787f6c813e"' \
  '"span_id":"d0c6d548d393c5f9"' '"duration_ms":12.5' '"duration":0.199999'; do
  e=$(fuel "{$m,$BASE}" 1); f=$(fuel "{$m,$BASE}" 2)
  echo "| \`$m\` | $((e - be)) | $((f - bf)) |"
done
