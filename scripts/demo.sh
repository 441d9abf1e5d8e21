#!/usr/bin/env bash
# The main job: replay the golden logs through the policy engine and show what the
# filter keeps and why. Later stages replace this with the replay through the real
# plugins (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
cargo build --release -q -p lockstep-cli
bin=target/release/lockstep
set_dir=golden/four-schemas
echo "== lockstep check: what the filter can read in $set_dir (four schemas)"
"$bin" check --policy "$set_dir/lockstep-policy.yaml" "$set_dir/logs.jsonl"
echo
echo "== lockstep explain: the first summary lines of each schema"
"$bin" explain --policy "$set_dir/lockstep-policy.yaml" "$set_dir/logs.jsonl" | grep -F '"duration_ms":' | grep -vF '"duration_ms":null' | head -n 8
echo
echo "== lockstep check: a sample with drift"
"$bin" check golden/drift/logs.jsonl
