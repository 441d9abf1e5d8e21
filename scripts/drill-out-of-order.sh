#!/usr/bin/env bash
# Drill c for lockstep_loki in a real Fluent Bit against a real Loki (issue 14): an
# outage whose backlog is older than Loki's out-of-order window. Manual only.
#
#   FLUENT_BIT=/path/to/release/fluent-bit LOKI_BIN=/path/to/loki \
#   LOKI_CONFIG=/path/to/loki.yaml scripts/drill-out-of-order.sh
#
# 0. Control: Loki up, one stream gets a fresh entry then one 2 h old: Loki answers
#    400 "too far behind" (its window is real on this build; the drill can fail).
# 1. Loki down. Fluent Bit reads DRILL_OLD records stamped 2 h ago, then DRILL_NEW fresh
#    records of the same streams, into lockstep_loki: all wait on disk.
# 2. Loki comes up (an empty data dir). The drain sends oldest first, so the stream's
#    newest entry is never ahead of the backlog by more than the window.
# Reported: entries Loki holds for the run (count_over_time) and distinct records, what
# the plugin sent, dead-lettered and dropped. Expected: every record once, none rejected.
#
# Loki's config must listen on 127.0.0.1:3100 (LOKI_PORT to change it) and allow old
# samples (limits_config.reject_old_samples: false, or a max age above 2 h).
# Optional: DRILL_OLD (20000), DRILL_NEW (20000), DRILL_AGE_S (7200), PLUGIN_SO,
# DRILL_OUTPUT=builtin (the same drill through Fluent Bit's built-in `loki` output with
# unlimited retries, m-builtin-backlog-behind.conf, for comparison; DRILL_WAIT_S, default
# 300, bounds the wait for its retries).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
: "${FLUENT_BIT:?set FLUENT_BIT to a release build of Fluent Bit 5.1.x}"
: "${LOKI_BIN:?set LOKI_BIN to a Loki binary}"
: "${LOKI_CONFIG:?set LOKI_CONFIG to its config file}"
PLUGIN_SO=${PLUGIN_SO:-$ROOT/dist/lockstep_out_loki.so}
OLD=${DRILL_OLD:-20000} NEW=${DRILL_NEW:-20000} AGE=${DRILL_AGE_S:-7200}
PORT=${LOKI_PORT:-3100}
LOKI=http://127.0.0.1:$PORT
export BENCH_CONF_DIR=$ROOT/fluent-bit-conf/bench
W=$(mktemp -d /tmp/drill-behind.XXXXXX)
echo "work dir $W" >&2
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

data_dir=$(sed -n 's/^ *path_prefix: *//p' "$LOKI_CONFIG" | head -n 1)
start_loki() {
  [ -n "$data_dir" ] && rm -rf "$data_dir"
  "$LOKI_BIN" -config.file="$LOKI_CONFIG" > "$W/loki.$1.log" 2>&1 &
  LOKI_PID=$!
  for _ in $(seq 240); do
    [ "$(curl -s "$LOKI/ready" || true)" = ready ] && return 0
    sleep 0.5
  done
  echo "Loki not ready after 120 s (see $W/loki.$1.log)" >&2; exit 1
}
stop_loki() { kill "$LOKI_PID"; wait "$LOKI_PID" || true; }
ns() { date +%s%N; }
push() { # $1 stream run label, $2 ts ns, $3 line -> HTTP status and body
  curl -s -o "$W/push.out" -w '%{http_code}' -H 'Content-Type: application/json' \
    --data "{\"streams\":[{\"stream\":{\"job\":\"drill\",\"run\":\"$1\"},\"values\":[[\"$2\",\"$3\"]]}]}" \
    "$LOKI/loki/api/v1/push"
  echo " $(head -c 200 "$W/push.out")"
}
count() { # entries of the run's streams Loki holds
  python3 - "$LOKI" "$1" <<'PY'
import json, sys, time, urllib.parse, urllib.request
base, run = sys.argv[1], sys.argv[2]
q = urllib.parse.urlencode({"query": 'sum(count_over_time({job="drill", run="%s"}[6h]))' % run,
                            "time": str(time.time_ns())})
try:
    with urllib.request.urlopen(base + "/loki/api/v1/query?" + q, timeout=60) as r:
        res = json.load(r)["data"]["result"]
    print(int(float(res[0]["value"][1])) if res else 0)
except Exception:
    print(0)
PY
}
metric() { { curl -s "http://127.0.0.1:$METRICS_PORT/metrics" || true; } |
  awk -v m="$1" '$1 ~ "^"m"([{]|$)" {s += $2} END {print s + 0}'; }

echo "== 0. control: does this Loki reject an entry 2 h behind its stream's newest?"
start_loki control
now=$(ns)
echo "fresh entry: $(push control "$now" fresh)"
echo "2 h older:   $(push control "$((now - AGE * 1000000000))" old)"
stop_loki

echo "== 1. Loki down; $OLD records stamped $((AGE / 60)) min ago, then $NEW fresh ones"
python3 - "$W/input.jsonl" "$OLD" "$NEW" "$AGE" <<'PY'
import json, sys, time
path, old, new, age = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
now = time.time()
def stamp(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int(t * 1000 % 1000)
with open(path, "w") as f:
    for i in range(old + new):
        t = now - age + i * 0.001 if i < old else now - 60 + (i - old) * 0.001
        f.write(json.dumps({"time": stamp(t), "app": ["api", "db"][i % 2], "level": "info",
                            "msg": "seq=%d %s" % (i, "old" if i < old else "new"),
                            "trace_id": "%032x" % (i + 1)}) + "\n")
PY
export DRILL_INPUT=$W/input.jsonl LOKI_PUSH_URL=$LOKI/loki/api/v1/push SPOOL_DIR=$W/spool
export METRICS_PORT=$((24000 + RANDOM % 8000)) DRILL_RUN=drill-$RANDOM$RANDOM
export FB_HTTP_PORT=$((24000 + RANDOM % 8000)) LOKI_PORT=$PORT
OUTPUT=${DRILL_OUTPUT:-lockstep}
total=$((OLD + NEW))
fb_input_records() {
  { curl -s "http://127.0.0.1:$FB_HTTP_PORT/api/v1/metrics" || true; } |
    python3 -c 'import json,sys
try: print(sum(v.get("records",0) for v in json.load(sys.stdin)["input"].values()))
except Exception: print(0)'
}
if [ "$OUTPUT" = builtin ]; then
  "$FLUENT_BIT" -c "$BENCH_CONF_DIR/m-builtin-backlog-behind.conf" > "$W/fb.log" 2>&1 &
  FB=$!
  for _ in $(seq 600); do [ "$(fb_input_records)" -ge "$total" ] && break; sleep 0.2; done
  echo "read while Loki is down: $(fb_input_records) records (built-in output, memory buffer, retrying)"
else
  "$FLUENT_BIT" -e "$PLUGIN_SO" -c "$BENCH_CONF_DIR/m-lockstep-backlog-behind.conf" > "$W/fb.log" 2>&1 &
  FB=$!
  for _ in $(seq 600); do
    [ "$(metric lockstep_loki_records_in_total)" -ge "$total" ] && break
    sleep 0.2
  done
  echo "queued while Loki is down: $(metric lockstep_loki_queue_records) records," \
    "oldest $(metric lockstep_loki_queue_oldest_age_seconds) s old"
fi

echo "== 2. Loki up"
t0=$(date +%s.%N)
start_loki drill
got=0
deadline=$(( $(date +%s) + ${DRILL_WAIT_S:-300} ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  got=$(count "$DRILL_RUN")
  if [ "$OUTPUT" = builtin ]; then
    [ "$got" -ge "$total" ] && break
  else
    [ "$got" -ge "$total" ] && [ "$(metric lockstep_loki_queue_records)" = 0 ] && break
  fi
  sleep 1
done
echo "after $(printf '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc)") s (Loki's start included):"
sleep 2
got=$(count "$DRILL_RUN")
echo "Loki holds $got entries of $total records for run $DRILL_RUN"
if [ "$OUTPUT" = builtin ]; then
  { grep -c "status=400" "$W/fb.log" || true; } | sed 's/^/pushes Loki refused with 400: /'
else
  echo "plugin: sent $(metric lockstep_loki_entries_sent_total), dead-lettered" \
    "$(metric lockstep_loki_dead_letter_entries_total), dropped $(metric lockstep_loki_entries_dropped_total)," \
    "queue $(metric lockstep_loki_queue_records)"
fi
{ grep -ci "too far behind" "$W/fb.log" || true; } | sed 's/^/"too far behind" lines in Fluent Bit log: /'
kill -TERM "$FB"; wait "$FB" || true
stop_loki
if [ "$got" = "$total" ]; then echo "OK: every record stored, none rejected"; else echo "FAIL"; exit 1; fi
