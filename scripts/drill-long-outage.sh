#!/usr/bin/env bash
# Drill d for lockstep_loki in a real Fluent Bit against a real Loki (issue 14): an
# hour-long Loki outage at 2,500 records/s (9 M records). Manual only; run it once by
# hand (it takes the outage plus the drain).
#
#   FLUENT_BIT=/path/to/release/fluent-bit LOKI_BIN=/path/to/loki \
#   LOKI_CONFIG=/path/to/loki.yaml scripts/drill-long-outage.sh
#
# A writer appends DRILL_RATE JSON lines a second (~230 bytes each) to a file that Fluent
# Bit tails into lockstep_loki, for the whole drill. Loki is down for DRILL_OUTAGE_S
# (3600), then comes up; ingest goes on at the same rate. Every 10 s the script logs
# Fluent Bit's RSS and CPU and the plugin's queue gauges (drill.tsv in the work dir).
# Reported: peak and spread of RSS during the outage, the queue at its largest, the
# time from Loki's start until the queue is back to what one flush holds, the drain rate
# against the ingest rate, and what Loki holds against what was written.
#
# Loki's config: LOKI_PORT (default 3100) on 127.0.0.1, its own data dir (path_prefix,
# emptied at start), limits allowing the burst (ingestion_rate_mb 64 or more).
# Optional: DRILL_RATE (2500), DRILL_OUTAGE_S (3600), DRILL_AFTER_S (300, ingest after
# the queue is drained, then stop), PLUGIN_SO.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
: "${FLUENT_BIT:?set FLUENT_BIT to a release build of Fluent Bit 5.1.x}"
: "${LOKI_BIN:?set LOKI_BIN to a Loki binary}"
: "${LOKI_CONFIG:?set LOKI_CONFIG to its config file}"
PLUGIN_SO=${PLUGIN_SO:-$ROOT/dist/lockstep_out_loki.so}
RATE=${DRILL_RATE:-2500} OUTAGE=${DRILL_OUTAGE_S:-3600} AFTER=${DRILL_AFTER_S:-300}
PORT=${LOKI_PORT:-3100}
LOKI=http://127.0.0.1:$PORT
export BENCH_CONF_DIR=$ROOT/fluent-bit-conf/bench
W=$(mktemp -d /tmp/drill-outage.XXXXXX)
echo "work dir $W" >&2
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
data_dir=$(sed -n 's/^ *path_prefix: *//p' "$LOKI_CONFIG" | head -n 1)

metric() { { curl -s "http://127.0.0.1:$METRICS_PORT/metrics" || true; } |
  awk -v m="$1" '$1 ~ "^"m"([{]|$)" {s += $2} END {printf "%d\n", s}'; }
rss_mb() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"; }

export DRILL_INPUT=$W/input.jsonl LOKI_PUSH_URL=$LOKI/loki/api/v1/push SPOOL_DIR=$W/spool
export METRICS_PORT=$((24000 + RANDOM % 8000)) DRILL_RUN=outage-$RANDOM$RANDOM
: > "$DRILL_INPUT"
# The writer: RATE lines a second in tenths, numbered; it prints how many it wrote on SIGTERM.
python3 - "$DRILL_INPUT" "$RATE" > "$W/writer.out" <<'PY' &
import json, random, signal, sys, time
path, rate = sys.argv[1], int(sys.argv[2])
n, stop = 0, False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
words = "request completed user cart item order token session cache miss hit upstream".split()
f = open(path, "a", buffering=1 << 20)
t0 = time.monotonic()
while not stop:
    due = int((time.monotonic() - t0) * rate)
    while n < due:
        f.write(json.dumps({"level": "info", "app": ["api", "db", "web", "auth"][n % 4],
                            "msg": "seq=%d %s" % (n, " ".join(random.choice(words) for _ in range(6))),
                            "trace_id": "%032x" % random.getrandbits(128),
                            "duration_ms": round(random.random() * 300, 3)}) + "\n")
        n += 1
    f.flush()
    time.sleep(0.1)
f.close()
print(n)
PY
WRITER=$!
"$FLUENT_BIT" -e "$PLUGIN_SO" -c "$BENCH_CONF_DIR/n-lockstep-long-outage.conf" > "$W/fb.log" 2>&1 &
FB=$!
printf 't_s\tphase\trss_mb\tcpu_s\tqueue_records\tqueue_disk_bytes\tsent\n' > "$W/drill.tsv"
sample() { # $1 phase
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(( $(date +%s) - T0 ))" "$1" "$(rss_mb "$FB")" "$(cpu_s "$FB")" \
    "$(metric lockstep_loki_queue_records)" "$(metric lockstep_loki_queue_disk_bytes)" \
    "$(metric lockstep_loki_entries_sent_total)" >> "$W/drill.tsv"
}
T0=$(date +%s)
echo "== outage: Loki down for $OUTAGE s while $RATE records/s arrive"
while [ $(( $(date +%s) - T0 )) -lt "$OUTAGE" ]; do sample outage; sleep 10; done
peak_queue=$(metric lockstep_loki_queue_records)
echo "== Loki up (queue: $peak_queue records, $(metric lockstep_loki_queue_disk_bytes) bytes on disk)"
[ -n "$data_dir" ] && rm -rf "$data_dir"
"$LOKI_BIN" -config.file="$LOKI_CONFIG" > "$W/loki.log" 2>&1 &
LOKI_PID=$!
T1=$(date +%s)
sent0=$(metric lockstep_loki_entries_sent_total)
drained=""
while :; do
  sample drain
  q=$(metric lockstep_loki_queue_records)
  # Drained: the queue is back to about what two seconds of ingest hold.
  if [ -z "$drained" ] && [ "$q" -le $((RATE * 2)) ]; then
    drained=$(( $(date +%s) - T1 ))
    sent_drain=$(( $(metric lockstep_loki_entries_sent_total) - sent0 ))
    echo "drained in $drained s (Loki's start included): $sent_drain entries sent"
    T2=$(date +%s)
  fi
  [ -n "$drained" ] && [ $(( $(date +%s) - T2 )) -ge "$AFTER" ] && break
  [ $(( $(date +%s) - T1 )) -gt 7200 ] && { echo "not drained after 2 h" >&2; break; }
  sleep 5
done
kill -TERM "$WRITER"; wait "$WRITER" || true
written=$(cat "$W/writer.out")
# Let the last lines through, then stop Fluent Bit (its stop drains what is left).
for _ in $(seq 60); do
  [ "$(metric lockstep_loki_records_in_total)" -ge "$written" ] && [ "$(metric lockstep_loki_queue_records)" = 0 ] && break
  sleep 1
done
sample end
kill -TERM "$FB"; wait "$FB" || true
sleep 2
held=$(python3 - "$LOKI" "$DRILL_RUN" <<'PY'
import json, sys, time, urllib.parse, urllib.request
base, run = sys.argv[1], sys.argv[2]
q = urllib.parse.urlencode({"query": 'sum(count_over_time({job="drill", run="%s"}[12h]))' % run,
                            "time": str(time.time_ns())})
with urllib.request.urlopen(base + "/loki/api/v1/query?" + q, timeout=300) as r:
    res = json.load(r)["data"]["result"]
print(int(float(res[0]["value"][1])) if res else 0)
PY
)
kill "$LOKI_PID"; wait "$LOKI_PID" || true
python3 - "$W/drill.tsv" "$RATE" "${drained:-0}" "${sent_drain:-0}" "$peak_queue" "$written" "$held" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
rate, drained, sent, peak, written, held = (float(x) for x in sys.argv[2:8])
out = [float(r[2]) for r in rows if r[1] == "outage"]
later = [r for r in rows if r[1] == "outage" and float(r[0]) >= 600]
print(f"RSS during the outage: {min(out):.1f} - {max(out):.1f} MB"
      + (f" (from 10 min on: {min(float(r[2]) for r in later):.1f} - {max(float(r[2]) for r in later):.1f} MB)" if later else ""))
print(f"queue at its largest: {int(peak)} records")
if drained:
    print(f"drain: {int(sent)} entries in {int(drained)} s = {sent / drained:,.0f} entries/s, "
          f"{sent / drained / rate:.1f}x the ingest rate ({int(rate)}/s)")
print(f"written {int(written)}, Loki holds {int(held)} ({'all' if held == written else 'MISMATCH'})")
print("samples: " + sys.argv[1])
PY
