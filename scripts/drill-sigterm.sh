#!/usr/bin/env bash
# SIGTERM drill for lockstep_loki in a real Fluent Bit (issue 14, drill b). Manual only.
#
#   FLUENT_BIT=/path/to/release/fluent-bit scripts/drill-sigterm.sh
#
# 1. A receiver that answers (and stores) every push DRILL_SLOW_MS late: Loki healthy
#    but slower than the intake, so a backlog builds up.
# 2. Fluent Bit tails DRILL_RECORDS JSON lines into lockstep_loki; once every record is
#    in the plugin's queue, SIGTERM. Reported: the backlog at that moment, how long the
#    stop took, what Loki had and what was left on disk.
# 3. Fluent Bit starts again on the same queue (tailing an empty file) and sends the
#    rest. Reported: entries stored, and duplicates (the receiver drops exact duplicates
#    and counts them): every record once is the expected end.
#
# Needs, already built: $FLUENT_BIT, $PLUGIN_SO (default dist/lockstep_out_loki.so),
# $RECEIVER_BIN (default target/release/examples/loki_receiver).
# Optional: DRILL_RECORDS (100000), DRILL_SLOW_MS (25), SHUTDOWN_GRACE (2s), GRACE (5).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
: "${FLUENT_BIT:?set FLUENT_BIT to a release build of Fluent Bit 5.1.x}"
PLUGIN_SO=${PLUGIN_SO:-$ROOT/dist/lockstep_out_loki.so}
RECEIVER_BIN=${RECEIVER_BIN:-$ROOT/target/release/examples/loki_receiver}
N=${DRILL_RECORDS:-100000}
SLOW=${DRILL_SLOW_MS:-25}
export SHUTDOWN_GRACE=${SHUTDOWN_GRACE:-2s} GRACE=${GRACE:-5}
export BENCH_CONF_DIR=$ROOT/fluent-bit-conf/bench
W=$(mktemp -d /tmp/drill-sigterm.XXXXXX)
echo "work dir $W" >&2
python3 - "$W/input.jsonl" "$N" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write(json.dumps({"app": ["api", "db"][i % 2], "level": "info",
                            "msg": f"record {i}", "trace_id": f"{i + 1:032x}"}) + "\n")
PY
: > "$W/empty.jsonl"

mkfifo "$W/recv.stdin"
LOKI_RECEIVER_SLOW_MS=$SLOW LOKI_RECEIVER_INTERVAL_MS=100 "$RECEIVER_BIN" \
  < "$W/recv.stdin" > "$W/recv.out" 2> "$W/recv.err" &
RPID=$!
exec {RFD}> "$W/recv.stdin"
url=""
for _ in $(seq 100); do url=$(head -n 1 "$W/recv.out" 2>/dev/null || true); [ -n "$url" ] && break; sleep 0.05; done
[ -n "$url" ] || { echo "receiver did not start" >&2; exit 1; }
export RECEIVER_URL=$url SPOOL_DIR=$W/spool
status() { tail -n 1 "$W/recv.out" || true; }
field() { status | tr ' ' '\n' | sed -n "s/^$1=//p"; }
metric() { { curl -s "http://127.0.0.1:$METRICS_PORT/metrics" || true; } | awk -v m="$1" '$1 ~ "^"m"[{]" {print $2; exit}'; }
now() { date +%s.%N; }

run_fb() { # $1 input file, $2 log
  export DRILL_INPUT=$1 METRICS_PORT=$((24000 + RANDOM % 8000))
  "$FLUENT_BIT" -e "$PLUGIN_SO" -c "$BENCH_CONF_DIR/g-lockstep-sigterm.conf" > "$2" 2>&1 &
  FB=$!
}

run_fb "$W/input.jsonl" "$W/fb1.log"
for _ in $(seq 600); do
  got=$(metric lockstep_loki_records_in_total || true)
  [ "${got%.*}" = "$N" ] && break
  kill -0 "$FB" 2>/dev/null || { echo "fluent-bit exited (see $W/fb1.log)" >&2; exit 1; }
  sleep 0.1
done
backlog=$(metric lockstep_loki_queue_records || true)
stored_before=$(field stored)
t0=$(now)
kill -TERM "$FB"
wait "$FB" || true
t1=$(now)
sleep 0.5
stored_at_exit=$(field stored)
left=$("$ROOT/target/release/lockstep" spool inspect "$W/spool" 2>/dev/null | awk '/^records queued/ {print $3; exit}' || true)

run_fb "$W/empty.jsonl" "$W/fb2.log"
for _ in $(seq 600); do
  s=$(field stored); [ "${s:-0}" -ge "$N" ] && break; sleep 0.1
done
sleep 1
kill -TERM "$FB"; wait "$FB" || true
sleep 0.3
echo "records: $N; receiver answering ${SLOW} ms late; shutdown_grace $SHUTDOWN_GRACE; Grace $GRACE"
echo "at SIGTERM: queued in the plugin $backlog, stored in Loki $stored_before"
printf 'stop took %.2f s; stored at exit %s; left on disk %s\n' "$(echo "$t1 - $t0" | bc)" "$stored_at_exit" "${left:-?}"
echo "after the restart: $(status)"
exec {RFD}>&-
wait "$RPID" 2>/dev/null || true
