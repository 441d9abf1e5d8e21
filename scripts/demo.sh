#!/usr/bin/env bash
# The main job: build the plugins, replay the golden logs through the real
# lockstep_filter.wasm in the filter_wasm host (what is kept, why, and whether kept logs
# follow kept traces 1:1; once for traces sampled by an OTel Collector, once for traces
# sampled by Fluent Bit's own `sampling` processor), then ship what the filter keeps through the real
# lockstep_out_loki.so (driven as Fluent Bit drives it) into the built-in Loki-compatible
# receiver, or into a real Loki when LOKI_URL is set (e.g. LOKI_URL=http://localhost:3100),
# and check Loki holds exactly one entry per kept record. Between the two, the golden sets
# (OTLP-shaped records too) go through the output alone with the policy as policy_file
# (sampling by whole trace): every line of every kept trace stored, none of a dropped
# one, against what the filter alone keeps; then traces kept by a Collector whose policy
# cannot be mirrored (golden/unmirrorable) go through the output twice: with the mirror
# as policy_file (lines lost both ways) and with decision_feed, the Collector's kept
# traces posted to the feed (every line of every kept trace, none of a dropped one).
# Last, it builds the policy
# playground (dist/playground/index.html) and prints its path.
# The CLI is built with the dev profile: the demo replays a few hundred lines, and a
# release build of wasmtime and Cranelift would take most of the first run's minutes
# (the plugins keep their release profile; operators build the CLI with --release).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The playground builds beside the rest (its wasm-bindgen-cli install keeps the second
# core busy while the plugins' link-time optimisation runs on one); its output is shown last.
playground_log=$(mktemp)
scripts/build-playground.sh > "$playground_log" 2>&1 &
playground_pid=$!
scripts/build-plugins.sh
cargo build -q -p lockstep-cli
bin=target/debug/lockstep
echo
echo "== lockstep replay golden/four-schemas (four schemas, through dist/lockstep_filter.wasm)"
"$bin" replay golden/four-schemas --wasm dist/lockstep_filter.wasm
echo
echo "== lockstep replay golden/fluent-bit (traces tail-sampled by Fluent Bit's own sampling processor)"
"$bin" replay golden/fluent-bit --wasm dist/lockstep_filter.wasm
echo
loki_arg=()
if [ -n "${LOKI_URL:-}" ]; then loki_arg=(--loki "$LOKI_URL"); fi
for set in four-schemas otlp; do
  echo "== lockstep replay golden/$set --through-output (no filter: dist/lockstep_out_loki.so samples by whole trace with policy_file, into ${LOKI_URL:-the built-in Loki receiver})"
  "$bin" replay "golden/$set" --through-output "${loki_arg[@]}"
  echo
done
echo "== lockstep replay golden/unmirrorable --through-output: traces kept by a Collector whose policy no mirror can follow (rate_limiting, an attribute only spans carry)"
echo "-- with the mirror of that policy as policy_file: lines are lost both ways (exit 2 expected)"
mirror=0
"$bin" replay golden/unmirrorable --through-output "${loki_arg[@]}" || mirror=$?
if [ "$mirror" != 2 ]; then
  echo "demo: the mirror was expected to orphan lines (exit 2), got exit $mirror" >&2
  exit 1
fi
echo "-- with decision_feed: the Collector's kept traces posted to the output's feed; logs follow them 1:1"
"$bin" replay golden/unmirrorable --through-output --feed "${loki_arg[@]}"
echo
if [ -n "${LOKI_URL:-}" ]; then
  echo "== lockstep ship: filter -> dist/lockstep_out_loki.so -> Loki at $LOKI_URL"
  "$bin" ship golden/four-schemas --loki "$LOKI_URL"
else
  echo "== lockstep ship: filter -> dist/lockstep_out_loki.so -> built-in Loki receiver (set LOKI_URL for a real Loki)"
  "$bin" ship golden/four-schemas
fi
echo
echo "== lockstep explain: a few summary lines"
explained=$(mktemp)
trap 'rm -f "$explained" "$playground_log"' EXIT
"$bin" explain --policy golden/four-schemas/lockstep-policy.yaml golden/four-schemas/logs.jsonl > "$explained"
grep -F '"duration_ms":' "$explained" | grep -vF '"duration_ms":null' | sed -n '1,6p'
echo "(... $(wc -l < "$explained") lines explained)"
echo
echo "== lockstep check: a sample with drift"
"$bin" check golden/drift/logs.jsonl
echo
echo "== the policy playground: the same explain, check and import in a browser page"
if ! wait "$playground_pid"; then
  cat "$playground_log"
  echo "demo: scripts/build-playground.sh failed" >&2
  exit 1
fi
cat "$playground_log"
echo "open file://$PWD/dist/playground/index.html (or serve dist/playground/ from any static host)"
