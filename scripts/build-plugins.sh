#!/usr/bin/env bash
# Release builds of the plugins into dist/:
#   dist/lockstep_filter.wasm       the filter (YAML or JSON policy files)
#   dist/lockstep_filter-json.wasm  the same, reading JSON policy files only (smaller)
#   dist/lockstep_out_loki.so       the Loki output (fluent-bit -e dist/lockstep_out_loki.so)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
mkdir -p dist
# Each artifact is written beside its final name and renamed into place (see the script;
# test-harness/tests/install_artifact.rs checks a loaded file is never overwritten).
install_as() { scripts/install-artifact.sh "$1" "$2"; }
cargo build -q -p filter-lockstep --target wasm32-unknown-unknown --profile wasm
install_as target/wasm32-unknown-unknown/wasm/lockstep_filter.wasm dist/lockstep_filter.wasm
cargo build -q -p filter-lockstep --target wasm32-unknown-unknown --profile wasm --no-default-features
install_as target/wasm32-unknown-unknown/wasm/lockstep_filter.wasm dist/lockstep_filter-json.wasm
# leave the default build as the last one in target/ too
cargo build -q -p filter-lockstep --target wasm32-unknown-unknown --profile wasm
cargo build -q -p out-loki --release
install_as target/release/liblockstep_out_loki.so dist/lockstep_out_loki.so
ls -l dist/
