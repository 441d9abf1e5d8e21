# Helpers shared by the manual bench scripts (sourced by scripts/bench-fluent-bit.sh and
# scripts/bench-sampling.sh; not run on its own).

now() { date +%s.%N; }
# utime+stime of a live process, seconds.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"; }
hwm_mb() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
rss_mb() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
# CPU seconds of each thread of a live process, by thread name: "name\tseconds" lines.
threads_cpu() {
  local t
  for t in /proc/"$1"/task/*; do
    awk -v hz="$(getconf CLK_TCK)" -v name="$(cat "$t/comm")" \
      '{ sub(/^.*\) /, ""); printf "%s\t%.2f\n", name, ($12 + $13) / hz }' "$t/stat" 2>/dev/null || true
  done
}
# The receiver's last "stored=N" progress line.
last_stored() { tail -n 1 "$1" 2>/dev/null | sed -n 's/^stored=\([0-9]*\).*/\1/p'; }
# Records Fluent Bit's outputs processed (its HTTP server on port $1).
null_records() {
  # Not up yet is 0 records, not a failed pipeline (which would end the script).
  { curl -s --max-time 1 "http://127.0.0.1:$1/api/v1/metrics" 2>/dev/null || true; } |
    python3 -c 'import json,sys
try: print(sum(v.get("proc_records",0) for v in json.load(sys.stdin)["output"].values()))
except Exception: print(0)'
}

# Where a run pushes: LOKI_URL's push path, or a fresh Loki-compatible receiver in run dir
# $1 ($RECEIVER_BIN, fed through a fifo held open on fd `rfd`). Sets the caller's `url`,
# `port`, `rpid` and `rfd` (declare them local first).
start_sink() {
  local d=$1
  if [ -n "${LOKI_URL:-}" ]; then
    url=${LOKI_URL%/}/loki/api/v1/push
    port=${LOKI_URL##*:}; port=${port%%/*}
  else
    mkfifo "$d/recv.stdin"
    LOKI_RECEIVER_INTERVAL_MS=100 LOKI_RECEIVER_DUMP=$d/stored.jsonl \
      "$RECEIVER_BIN" < "$d/recv.stdin" > "$d/recv.out" 2> "$d/recv.err" &
    rpid=$!
    exec {rfd}> "$d/recv.stdin"
    url=""
    for _ in $(seq 100); do url=$(head -n 1 "$d/recv.out" 2>/dev/null || true); [ -n "$url" ] && break; sleep 0.05; done
    [ -n "$url" ] || { echo "receiver did not start" >&2; return 1; }
    port=${url#http://127.0.0.1:}; port=${port%%/*}
  fi
}

# SIGTERM to Fluent Bit ($1, run label $2) if it still runs: sets the caller's `exit_s`
# (seconds it took to exit, or HANG when it was killed after 30 s) and `rc`.
stop_fluent_bit() {
  local fb=$1 label=$2
  exit_s="-"; rc="-"
  if kill -0 "$fb" 2>/dev/null; then
    local t2; t2=$(now)
    kill -TERM "$fb"
    for _ in $(seq 600); do kill -0 "$fb" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$fb" 2>/dev/null; then
      echo "run $label: fluent-bit still running 30 s after SIGTERM: killing it" >&2
      kill -KILL "$fb"; exit_s=HANG
    else
      exit_s=$(printf "%.2f" "$(echo "$(now) - $t2" | bc)")
    fi
    set +e; wait "$fb"; rc=$?; set -e
  fi
}
