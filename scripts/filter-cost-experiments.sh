#!/usr/bin/env bash
# Where the filter's wasm instructions above the floor go (issue 24): builds
# lockstep_filter.wasm as committed and with each patch of scripts/experiments/filter-cost/
# applied, in a throwaway git worktree, and prints each one's executed wasm instructions a
# record (wasmtime fuel, test-harness/examples/filter_bench) on the same lines.
#
#   A  the fast scanner's byte and word reads unchecked (raw pointer reads): what the
#      bound checks of safe slices cost. Not shippable: `unsafe` in a core crate, and a
#      read may pass the end of the text.
#   B  the string scan's mask without its validation terms (control bytes, non-ASCII):
#      what validating strings costs in the hot loop. Not shippable: invalid JSON would
#      be accepted.
#   C  no field aliases or attribute keys: every member is skipped unmatched. What
#      decoding matched values, the decision's facts and the trace memory cost. The
#      decisions change (nothing is kept).
#
# Manual measuring aid: needs the wasm32-unknown-unknown target and a release
# filter_bench (cargo build --release -p lockstep-harness --example filter_bench).
#   LINES=file.jsonl scripts/filter-cost-experiments.sh [RECORDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${1:-20000}
BENCH=${FILTER_BENCH:-$ROOT/target/release/examples/filter_bench}
[ -x "$BENCH" ] || { echo "missing $BENCH (cargo build --release -p lockstep-harness --example filter_bench)" >&2; exit 2; }
WT=$(mktemp -d)
trap 'git -C "$ROOT" worktree remove --force "$WT" >/dev/null 2>&1 || rm -rf "$WT"' EXIT
git worktree add --detach "$WT" HEAD >/dev/null
TARGET=${EXPERIMENT_TARGET_DIR:-$ROOT/target/experiments}
measure() {
  local name=$1; shift
  git -C "$WT" checkout -q -- .
  for p in "$@"; do git -C "$WT" apply "$ROOT/scripts/experiments/filter-cost/$p.patch"; done
  (cd "$WT" && cargo build -q -p filter-lockstep --target wasm32-unknown-unknown --profile wasm --target-dir "$TARGET")
  local out
  out=$("$BENCH" "$TARGET/wasm32-unknown-unknown/wasm/lockstep_filter.wasm" "$N" | tail -n 1)
  printf '%-32s %s wasm instructions/record, kept %s\n' "$name" \
    "$(grep -o '[0-9]* wasm instructions/record' <<< "$out" | cut -d' ' -f1)" \
    "$(grep -o 'kept [0-9/]*' <<< "$out" | cut -d' ' -f2)"
}
measure "as committed"
measure "A (unchecked reads)" A-unchecked-reads
measure "B (no validation in the mask)" B-no-validation-mask
measure "A + B" A-unchecked-reads B-no-validation-mask
measure "C (nothing matched)" C-nothing-matched
