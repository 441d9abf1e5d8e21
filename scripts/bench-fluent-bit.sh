#!/usr/bin/env bash
# Benchmark lockstep_out_loki.so inside a real Fluent Bit against Fluent Bit's built-in
# `loki` output and the `null` floor. Manual only: CI must not run it (it needs a
# Fluent Bit binary, and its timings are only meaningful on a quiet machine).
#
# Usage:
#   FLUENT_BIT=/path/to/fluent-bit scripts/bench-fluent-bit.sh
#
# Needs, already built (this script builds and fetches nothing):
#   $FLUENT_BIT      a RELEASE build of Fluent Bit 5.1.x with the Go proxy loader
#                    (FLB_PROXY_GO=On) and in_tail, out_loki, out_null; for the filter
#                    runs in_stdin, filter_wasm, filter_lua, out_counter and the HTTP server
#   $PLUGIN_SO       default dist/lockstep_out_loki.so (scripts/build-plugins.sh)
#   $RECEIVER_BIN    default target/release/examples/loki_receiver
#                    (cargo build --release -p lockstep-hosts --example loki_receiver)
# Optional:
#   LOKI_URL         a real Loki (e.g. http://127.0.0.1:3100): runs a, b and c push to it
#                    instead of the receiver, each run into its own stream (label
#                    run=<run>-<n>); entries, distinct records and duplicates are counted
#                    in Loki (count_over_time, then every line read back by query_range)
#   BENCH_INPUT      JSON lines file (default /tmp/bench-input.jsonl; generated with
#                    BENCH_RECORDS lines, default 500000, when missing)
#   BENCH_RUNS       runs to do, default "a b c d"
#   BENCH_WORK       scratch dir (default: a fresh mktemp dir)
#   BENCH_TIMEOUT    seconds a run may take before it is declared stuck (default 300)
#
# Runs (configs in fluent-bit-conf/bench/):
#   a  lockstep_loki, spool_sync always     c  built-in loki, Retry_Limit 10
#   b  lockstep_loki, spool_sync 200ms      d  null output (Fluent Bit's own cost)
# Filter runs (stdin -> filter -> counter, the four-schema edge workload, piped in):
#   h  no filter                             j  the Lua filter an operator writes today
#   i  a WASM module that drops everything   k  lockstep_filter.wasm, built-in policy
#      (Fluent Bit's own JSON round trip)       (errors + slower than 200 ms)
#   l  lockstep_filter.aot (BENCH_AOT, default dist/lockstep_filter.aot), the same module
#      compiled ahead of time by flb-wamrc (see README, "Ahead-of-time compiled")
#   o  floor probe: drops everything, as i, from a module that exports malloc/free as
#      lockstep does (scan-floor.wat `drop`): o - i is the host's allocator calls
#   p  floor probe: every string boundary of the record found (scan-floor.wat `strings`)
#   q  floor probe: every top-level member walked (scan-floor.wat `members`); p and q
#      are hand-written WebAssembly that validate and decide nothing and drop every
#      record: what the interpreter costs a reader at the least (needs wabt's wat2wasm)
#   e.g. BENCH_RUNS="h j k i j k i j k" (interleaved: load drift hits every filter)
#   BENCH_FILTER_INPUT  default /tmp/bench-filter-input.jsonl: golden/four-schemas/logs.jsonl
#                       repeated BENCH_FILTER_REPEAT times (default 560, ~180,000 lines),
#                       each repetition with its own trace ids
#   BENCH_WASM          default dist/lockstep_filter.wasm
#   Per filter run: records the input read and that reached the counter, Fluent Bit CPU
#   (user+sys) and peak RSS (VmHWM) once every line went through, each as a ratio to the
#   Lua runs' median, and the wall time from the first line to the last.
# (e-lockstep-outage.conf and f-lockstep-two-instances.conf in the same dir are for manual
# checks: outage + restart on the same spool_dir, and two instances / Workers 2.)
# Per run: entries the receiver stored, exact duplicates it dropped, distinct records
# among what it stored (by the `seq=` in each line), Fluent Bit CPU (user+sys) and wall
# time from start until the receiver held every record (null: until Fluent Bit counted
# them all), peak RSS (VmHWM) then, and how long Fluent Bit took to exit on SIGTERM.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
: "${FLUENT_BIT:?set FLUENT_BIT to an already-built fluent-bit binary}"
PLUGIN_SO=${PLUGIN_SO:-$ROOT/dist/lockstep_out_loki.so}
RECEIVER_BIN=${RECEIVER_BIN:-$ROOT/target/release/examples/loki_receiver}
CONF_DIR=$ROOT/fluent-bit-conf/bench
BENCH_INPUT=${BENCH_INPUT:-/tmp/bench-input.jsonl}
BENCH_RECORDS=${BENCH_RECORDS:-500000}
BENCH_RUNS=${BENCH_RUNS:-a b c d}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-300}
WORK=${BENCH_WORK:-$(mktemp -d /tmp/bench-fluent-bit.XXXXXX)}
mkdir -p "$WORK"

[ -x "$FLUENT_BIT" ] || { echo "not executable: $FLUENT_BIT" >&2; exit 2; }
output_runs=$(tr -cd 'abcd' <<< "$BENCH_RUNS")
filter_runs=$(tr -cd 'hijklopq' <<< "$BENCH_RUNS")
if [ -n "$output_runs" ]; then
  [ -f "$PLUGIN_SO" ] || { echo "missing $PLUGIN_SO: run scripts/build-plugins.sh" >&2; exit 2; }
  [ -n "${LOKI_URL:-}" ] || [ -x "$RECEIVER_BIN" ] || {
    echo "missing $RECEIVER_BIN: cargo build --release -p lockstep-hosts --example loki_receiver" >&2
    exit 2
  }
fi
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 2; }
command -v bc >/dev/null || { echo "bc is needed" >&2; exit 2; }
# An early exit (a failed step under set -e) must not leave Fluent Bit or a receiver running.
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

if [ -n "$output_runs" ] && [ ! -f "$BENCH_INPUT" ]; then
  echo "generating $BENCH_RECORDS lines into $BENCH_INPUT" >&2
  python3 - "$BENCH_INPUT" "$BENCH_RECORDS" <<'EOF'
import json, random, sys
path, n = sys.argv[1], int(sys.argv[2])
random.seed(42)
apps = ["checkout", "payments", "search", "auth"]
levels = ["info", "info", "info", "warn", "error", "debug"]
words = ("request completed user cart item order token session cache miss hit "
         "backend upstream latency retry timeout").split()
with open(path, "w") as f:
    for i in range(n):
        r = {"time": "2026-09-01T12:%02d:%02d.%06dZ" % ((i // 60000) % 60, (i // 1000) % 60, (i % 1000) * 1000),
             "level": random.choice(levels), "app": apps[i % 4],
             "msg": "seq=%d %s" % (i, " ".join(random.choice(words) for _ in range(6))),
             "trace_id": "%032x" % random.getrandbits(128),
             "span_id": "%016x" % random.getrandbits(64),
             "duration_ms": round(random.random() * 500, 3)}
        f.write(json.dumps(r, separators=(",", ":")) + "\n")
EOF
fi
N=0
[ -n "$output_runs" ] && N=$(wc -l < "$BENCH_INPUT")

BENCH_FILTER_INPUT=${BENCH_FILTER_INPUT:-/tmp/bench-filter-input.jsonl}
BENCH_FILTER_REPEAT=${BENCH_FILTER_REPEAT:-560}
BENCH_WASM=${BENCH_WASM:-$ROOT/dist/lockstep_filter.wasm}
BENCH_AOT=${BENCH_AOT:-$ROOT/dist/lockstep_filter.aot}
FN=0
if [ -n "$filter_runs" ]; then
  [ -f "$BENCH_WASM" ] || { echo "missing $BENCH_WASM: run scripts/build-plugins.sh" >&2; exit 2; }
  if [[ $filter_runs == *l* ]] && [ ! -f "$BENCH_AOT" ]; then
    echo "missing $BENCH_AOT: flb-wamrc --disable-simd -o $BENCH_AOT $BENCH_WASM (README: Ahead-of-time compiled)" >&2
    exit 2
  fi
  if [ ! -f "$BENCH_FILTER_INPUT" ]; then
    echo "generating $BENCH_FILTER_INPUT ($BENCH_FILTER_REPEAT x golden/four-schemas/logs.jsonl)" >&2
    python3 - "$ROOT/golden/four-schemas/logs.jsonl" "$BENCH_FILTER_INPUT" "$BENCH_FILTER_REPEAT" <<'EOF'
import re, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(src, encoding="utf-8").read().splitlines()
hexid = re.compile(r"\b[0-9a-fA-F]{32}\b")
def new_id(m, r):
    t = m.group(0)
    v = "%032x" % (int(t, 16) ^ (r * 0x9E3779B97F4A7C15F39CC0605CEDC834 & (2**128 - 1)))
    return v.upper() if t.isupper() else v
with open(dst, "w", encoding="utf-8") as f:
    for r in range(n):
        for l in lines:
            f.write(hexid.sub(lambda m: new_id(m, r), l) + "\n")
EOF
  fi
  FN=$(wc -l < "$BENCH_FILTER_INPUT")
  if [[ $filter_runs == *[opq]* ]]; then
    command -v wat2wasm > /dev/null || { echo "runs o, p and q need wat2wasm (Debian: wabt)" >&2; exit 2; }
    wat2wasm "$CONF_DIR/scan-floor.wat" -o "$WORK/scan-floor.wasm"
  fi
  mkdir -p "$WORK/policy"
  # drop.wasm: exports memory and f(6 x i32) -> i32 returning 0 (read by the host as "").
  python3 -c 'import sys; sys.stdout.buffer.write(bytes([0,97,115,109,1,0,0,0, 1,11,1,0x60,6,0x7f,0x7f,0x7f,0x7f,0x7f,0x7f,1,0x7f, 3,2,1,0, 5,3,1,0,2, 7,14,2,6,109,101,109,111,114,121,2,0,1,102,0,0, 10,6,1,4,0,0x41,0,0x0b]))' > "$WORK/drop.wasm"
fi

# now, cpu_of, hwm_mb, last_stored, null_records, start_sink, stop_fluent_bit
. "$ROOT/scripts/bench-common.sh"

# Real Loki: entries of one run's stream, and (with "distinct") the distinct records among
# them (by the seq= in each line), read back page by page.
loki_count() {
  python3 - "$LOKI_URL" "$1" "${2:-}" <<'EOF'
import json, re, sys, time, urllib.parse, urllib.request
base, run, mode = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
sel = '{job="bench", run="%s"}' % run
def get(path, **q):
    with urllib.request.urlopen(base + path + "?" + urllib.parse.urlencode(q), timeout=60) as r:
        return json.load(r)["data"]
now = time.time_ns()
try:
    res = get("/loki/api/v1/query", query="sum(count_over_time(%s[6h]))" % sel, time=str(now))["result"]
    total = int(float(res[0]["value"][1])) if res else 0
except Exception:
    total = 0
if mode != "distinct":
    print(total); sys.exit()
seqs, start, end, bad = set(), now - 6 * 3600 * 10**9, now + 10**9, 0
at_start = 0  # entries at ts == start already counted in earlier pages
while True:
    streams = get("/loki/api/v1/query_range", query=sel, start=str(start), end=str(end),
                  limit="5000", direction="forward")["result"]
    vals = sorted(((int(v[0]), v[1], s["stream"]) for s in streams for v in s["values"]), key=lambda v: v[0])
    if not vals: break
    skip = at_start
    for ts, line, labels in vals:
        if ts == start and skip:
            skip -= 1; continue
        m = re.search(r"seq=(\d+)", line)
        if m: seqs.add(int(m.group(1)))
        if labels.get("app") is None: bad += 1
    last = vals[-1][0]
    at_start = sum(1 for v in vals if v[0] == last) + (at_start if last == start else 0)
    if len(vals) < 5000: break
    start = last
print(total, len(seqs) if not bad else "%d(%d-no-app-label)" % (len(seqs), bad))
EOF
}

RESULTS=$WORK/results.tsv
FRESULTS=$WORK/filter-results.tsv
: > "$RESULTS"
: > "$FRESULTS"

input_records() {
  { curl -s --max-time 1 "http://127.0.0.1:$1/api/v1/metrics" 2>/dev/null || true; } |
    python3 -c 'import json,sys
try: print(sum(v.get("records",0) for v in json.load(sys.stdin)["input"].values()))
except Exception: print(0)'
}

run_filter() {
  local run=$1 conf
  case $run in
    h) conf=h-filter-none.conf ;;
    i) conf=i-filter-drop-probe.conf ;;
    j) conf=j-filter-lua.conf ;;
    k) conf=k-filter-lockstep.conf ;;
    l) conf=l-filter-lockstep-aot.conf ;;
    o) conf=o-filter-drop-floor.conf ;;
    p) conf=p-filter-strings-floor.conf ;;
    q) conf=q-filter-members-floor.conf ;;
  esac
  local d=$WORK/$run.$RANDOM
  mkdir -p "$d"
  mkfifo "$d/in.fifo"
  local http_port=$((24000 + RANDOM % 8000))
  echo "filter run $run: $FLUENT_BIT -c $CONF_DIR/$conf < $BENCH_FILTER_INPUT (through a pipe)" >&2
  BENCH_CONF_DIR=$CONF_DIR BENCH_WORK=$WORK BENCH_WASM=$BENCH_WASM BENCH_AOT=$BENCH_AOT FB_HTTP_PORT=$http_port \
    "$FLUENT_BIT" -c "$CONF_DIR/$conf" < "$d/in.fifo" > "$d/out.txt" 2> "$d/fluent-bit.log" &
  local fb=$! wfd
  # Hold the pipe open: Fluent Bit's stdin input stops the service at end of file, before
  # everything it read has been through the pipeline.
  exec {wfd}> "$d/in.fifo"
  local t0; t0=$(now)
  cat "$BENCH_FILTER_INPUT" >&"$wfd" || echo "filter run $run: input closed early (Fluent Bit died?)" >&2
  local got=0
  while [ "$got" -lt "$FN" ]; do
    kill -0 "$fb" 2>/dev/null || { echo "filter run $run: fluent-bit exited early (see $d/fluent-bit.log)" >&2; break; }
    if [ "$(echo "$(now) - $t0 > $BENCH_TIMEOUT" | bc)" = 1 ]; then echo "filter run $run: only $got of $FN" >&2; break; fi
    got=$(input_records "$http_port"); got=${got:-0}
    sleep 0.05
  done
  local wall; wall=$(printf '%.2f' "$(echo "$(now) - $t0" | bc)")
  sleep 1.5 # the last flush reaches the counter
  local cpu rss kept
  cpu=$(cpu_of "$fb" 2>/dev/null || echo -); rss=$(hwm_mb "$fb" 2>/dev/null || echo -)
  exec {wfd}>&-
  wait "$fb" || true
  # counter prints one JSON object per flushed chunk: {"ts":…,"log_records":<in it>,…}
  kept=$(sed -n 's/.*"log_records":\([0-9]*\).*/\1/p' "$d/out.txt" | awk '{ s += $1 } END { print s + 0 }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$conf" "${kept:-0}" "$cpu" "$wall" "$rss" "$got" >> "$FRESULTS"
  grep -E '\[error\]' "$d/fluent-bit.log" | head -n 5 | sed "s/^/  [$run] /" >&2 || true
}

run_one() {
  local run=$1 conf plugin=yes
  case $run in
    a) conf=a-lockstep-sync-always.conf ;;
    b) conf=b-lockstep-sync-200ms.conf ;;
    c) conf=c-builtin-loki.conf; plugin=no ;;
    d) conf=d-null.conf; plugin=no ;;
    *) echo "unknown run $run" >&2; return 1 ;;
  esac
  local d=$WORK/$run
  rm -rf "$d"; mkdir -p "$d/spool"
  local bench_run=$run-$RANDOM$RANDOM rpid="" rfd="" url port
  start_sink "$d"
  local http_port=$((24000 + RANDOM % 8000))

  local args=(-c "$CONF_DIR/$conf")
  [ "$plugin" = yes ] && args=(-e "$PLUGIN_SO" "${args[@]}")
  echo "run $run: $FLUENT_BIT ${args[*]}  (receiver $url)" >&2
  local t0; t0=$(now)
  BENCH_RUN=$bench_run BENCH_INPUT=$BENCH_INPUT RECEIVER_URL=$url RECEIVER_PORT=$port SPOOL_DIR=$d/spool \
    FB_HTTP_PORT=$http_port BENCH_CONF_DIR=$CONF_DIR \
    "$FLUENT_BIT" "${args[@]}" > "$d/fluent-bit.log" 2>&1 &
  local fb=$!
  local done_at="" cpu="" rss="" got=0
  while :; do
    if ! kill -0 "$fb" 2>/dev/null; then echo "run $run: fluent-bit exited early (see $d/fluent-bit.log)" >&2; break; fi
    if [ "$run" = d ]; then got=$(null_records "$http_port")
    elif [ -n "${LOKI_URL:-}" ]; then got=$(loki_count "$bench_run"); sleep 0.45
    else got=$(last_stored "$d/recv.out"); fi
    got=${got:-0}
    if [ "$got" -ge "$N" ]; then
      done_at=$(now); cpu=$(cpu_of "$fb"); rss=$(hwm_mb "$fb"); break
    fi
    if [ "$(echo "$(now) - $t0 > $BENCH_TIMEOUT" | bc)" = 1 ]; then
      echo "run $run: only $got of $N after ${BENCH_TIMEOUT}s" >&2
      cpu=$(cpu_of "$fb"); rss=$(hwm_mb "$fb"); break
    fi
    sleep 0.05
  done
  # Let late retries land, so duplicates show.
  sleep 3
  local exit_s rc
  stop_fluent_bit "$fb" "$run"
  local stored dup distinct=-
  if [ -n "${LOKI_URL:-}" ]; then
    if [ "$run" = d ]; then
      stored="(null: ${got})"; dup=-
    else
      sleep 2 # what Loki acknowledged is queryable
      read -r stored distinct <<< "$(loki_count "$bench_run" distinct)"
      local nd=${distinct%%"("*}
      dup=$((stored - nd))
    fi
  else
  exec {rfd}>&-
  wait "$rpid" || true
  local last; last=$(tail -n 1 "$d/recv.out")
  stored=$(sed -n 's/^stored=\([0-9]*\).*/\1/p' <<< "$last")
  # null: nothing reaches the receiver; show what Fluent Bit's null output counted.
  [ "$run" = d ] && stored="(null: ${got})"
  dup=$(sed -n 's/.* duplicates=\([0-9]*\).*/\1/p' <<< "$last")
  if [ "$run" != d ]; then
    distinct=$(python3 - "$d/stored.jsonl" <<'EOF'
import json, re, sys
seqs, bad = set(), 0
for l in open(sys.argv[1]):
    e = json.loads(l)
    m = re.search(r"seq=(\d+)", e["line"])
    if m: seqs.add(int(m.group(1)))
    if e["labels"].get("job") != "bench" or "app" not in e["labels"] or \
       not any(k == "trace_id" for k, _ in e["structured_metadata"]):
        bad += 1
print(len(seqs) if not bad else "%d(%d-bad-labels)" % (len(seqs), bad))
EOF
)
  fi
  fi
  local wall=-
  [ -n "$done_at" ] && wall=$(printf '%.2f' "$(echo "$done_at - $t0" | bc)")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$conf" "${stored:-0}" "${dup:-0}" "$distinct" \
    "${cpu:--}" "$wall" "${rss:--}" "$exit_s" "$rc" >> "$RESULTS"
  grep -E '\[(error|warn)\]|lockstep' "$d/fluent-bit.log" | grep -v 'caught signal\|service will shutdown' | head -n 20 | sed "s/^/  [$run] /" >&2 || true
}

for r in $BENCH_RUNS; do
  case $r in
    h | i | j | k | l | o | p | q) run_filter "$r" ;;
    *) run_one "$r" ;;
  esac
done

if [ -n "$filter_runs" ]; then
  python3 - "$FRESULTS" "$FN" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print(f"\nfilter runs, records in input: {sys.argv[2]}")
names = {"h": "no filter", "i": "WASM drop-all probe", "j": "Lua mirror", "k": "lockstep_filter.wasm", "l": "lockstep_filter.aot", "o": "floor probe: drop, with malloc/free", "p": "floor probe: strings", "q": "floor probe: members"}
def med(run, i):
    v = [float(r[i]) for r in rows if r[0] == run]
    return statistics.median(v) if v else None
lua_cpu, lua_rss = med("j", 3), med("j", 5)
print("| run | filter | records in | records out | CPU s | wall s | peak RSS MB | CPU / Lua | RSS / Lua |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    cr = f"{float(r[3]) / lua_cpu:.2f}" if lua_cpu else "-"
    rr = f"{float(r[5]) / lua_rss:.2f}" if lua_rss else "-"
    print(f"| {r[0]} | {names[r[0]]} | {r[6]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {cr} | {rr} |")
print("medians: " + ", ".join(f"{names[k]} {med(k, 3):.2f} s" for k in "hijklopq" if med(k, 3) is not None))
EOF
fi
if [ -z "$output_runs" ]; then echo "logs: $WORK" >&2; exit 0; fi

python3 - "$RESULTS" "$N" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
n = int(sys.argv[2])
print(f"\nrecords in input: {n}")
hdr = ("run", "config", "stored", "dup dropped", "distinct", "CPU s", "wall s", "peak RSS MB", "SIGTERM exit s", "rc")
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
for r in rows:
    print("| " + " | ".join(r) + " |")
import statistics
def f(run, i):
    # The median over every run of that kind (interleave runs: load drift hits all).
    v = []
    for r in rows:
        try:
            if r[0] == run: v.append(float(r[i]))
        except ValueError: pass
    return statistics.median(v) if v else None
print("ratios of medians over the runs above")
floor = f("d", 5)
for run in ("a", "b"):
    cpu, rss, bcpu, brss = f(run, 5), f(run, 7), f("c", 5), f("c", 7)
    if cpu is not None and bcpu:
        print(f"{run}/c CPU ratio: {cpu / bcpu:.2f}", end="")
        if floor is not None and bcpu - floor > 0:
            print(f"   above null floor: {cpu - floor:.2f} s vs {bcpu - floor:.2f} s (ratio {(cpu - floor) / (bcpu - floor):.2f})", end="")
        print()
    if rss is not None and brss:
        print(f"{run}/c peak RSS ratio: {rss / brss:.2f}")
EOF
echo "logs and receiver dumps: $WORK" >&2
