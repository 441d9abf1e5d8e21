#!/usr/bin/env bash
# Benchmark lockstep_loki's sampling by whole trace (`policy_file`, issue 11) inside a real
# Fluent Bit: the same input through lockstep_loki without a policy, with one, and through
# the Lua mirror filter + Fluent Bit's built-in `loki` output. Manual only: CI must not run
# it (it needs a Fluent Bit binary, and its timings only mean something on a quiet machine).
#
# Usage:
#   FLUENT_BIT=/path/to/fluent-bit LOKI_URL=http://127.0.0.1:3100 scripts/bench-sampling.sh
#
# Needs, already built (this script builds and fetches nothing):
#   $FLUENT_BIT      a RELEASE build of Fluent Bit 5.1.x with the Go proxy loader
#                    (FLB_PROXY_GO=On), in_tail, filter_lua, out_loki and the HTTP server
#   $PLUGIN_SO       default dist/lockstep_out_loki.so (scripts/build-plugins.sh). Point it
#                    at a copy when dist/ may be rebuilt during the runs
#   $RECEIVER_BIN    default target/release/examples/loki_receiver, used without LOKI_URL
#                    (cargo build --release -p lockstep-hosts --example loki_receiver)
# Optional:
#   LOKI_URL         a real Loki (e.g. http://127.0.0.1:3100; the built-in output of run
#                    `lua` pushes to 127.0.0.1 and the port of this URL). Each run writes its
#                    own stream (label run=<run>-<n>); entries are counted in Loki
#                    (count_over_time) while the run goes, and read back by query_range at
#                    its end. Without it, the Loki-compatible receiver counts them
#   BENCH_INPUT      JSON lines file (default /tmp/bench-sampling-input.jsonl; generated
#                    deterministically when missing, BENCH_LINES lines, default 300000):
#                    requests of 2-4 lines sharing a random 32-hex trace_id, detail lines
#                    first ("request started", "db query": level info/debug, no duration),
#                    the deciding line last ("request finished": level error for ~5 % of
#                    requests, else info; duration_ms > 200 for ~10 %), up to 8 requests
#                    interleaved, ~0.5 % untraced lines; every line has a unique `seq`
#   BENCH_RSS_LINES  lines of BENCH_INPUT fed to the rss-* runs (default 150000, ~50,000
#                    traces; written to BENCH_INPUT minus .jsonl plus -rss.jsonl)
#   BENCH_POLICY     default fluent-bit-conf/bench/s-policy.yaml (errors + slower than 200 ms:
#                    golden/four-schemas/lockstep-policy.yaml without its probabilistic
#                    baseline, which is also the built-in default)
#   BENCH_DECISION_WAIT / BENCH_NUM_TRACES          run `policy`: default 2s / 200000
#                    (num_traces above the traces that arrive within one decision_wait, so
#                    no trace is decided early; the metrics at the end show it)
#   BENCH_RSS_DECISION_WAIT / BENCH_RSS_NUM_TRACES  run `rss-policy`: default 10m / 100000
#   BENCH_RUNS       default "null none policy lua none policy lua none policy lua rss-none
#                    rss-policy rss-none rss-policy rss-none rss-policy" (interleaved: load drift
#                    hits every kind)
#   BENCH_WORK       scratch dir (default: a fresh mktemp dir)
#   BENCH_TIMEOUT    seconds a run may take before it is declared stuck (default 300)
#   BENCH_SETTLE     seconds waited after the last expected record before the final count,
#                    so late or leaked lines show (default 5)
#
# Runs (configs in fluent-bit-conf/bench/):
#   none        tail -> lockstep_loki, no policy_file (every line shipped)     s-none.conf
#   policy      tail -> lockstep_loki, policy_file BENCH_POLICY                 s-policy.conf
#   lua         tail -> lua (lockstep-mirror.lua, as filter run j of
#               bench-fluent-bit.sh) -> built-in loki                           s-lua.conf
#   rss-none    the first BENCH_RSS_LINES lines through s-none.conf
#   rss-policy  the same lines through s-policy.conf with decision_wait BENCH_RSS_DECISION_WAIT:
#               every trace is still waiting when RSS is read
#   null        tail -> null output (d-null.conf): Fluent Bit's own tail + parse cost, the
#               floor under all three (counted by Fluent Bit's HTTP server)
# The expected lines are computed from the input: `policy` ships every line of each trace
# with an error line or a line slower than 200 ms (and untraced lines that are either
# themselves) and nothing else; `lua` ships what the mirror passes (it decides line by
# line: a trace's lines from its deciding line on, here the deciding line only).
# Per run: Fluent Bit CPU (user+sys from /proc) and wall time from start until Loki held
# every expected line, peak RSS (VmHWM) and VmRSS then; then, BENCH_SETTLE s later, the
# entries stored, distinct lines (by seq), the expected lines missing and the stored
# lines not expected; the plugin's metrics; how long Fluent Bit took to exit on SIGTERM.
# rss-policy is measured once the plugin took in every line (records_in_total), with
# lockstep_loki_traces_waiting read from its metrics_listen. Each run's dir in BENCH_WORK
# keeps Fluent Bit's log, the plugin's metrics at the end (metrics.txt), and the CPU
# seconds of each of Fluent Bit's threads when the measure was taken (threads-cpu.tsv).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
: "${FLUENT_BIT:?set FLUENT_BIT to an already-built fluent-bit binary}"
PLUGIN_SO=${PLUGIN_SO:-$ROOT/dist/lockstep_out_loki.so}
RECEIVER_BIN=${RECEIVER_BIN:-$ROOT/target/release/examples/loki_receiver}
CONF_DIR=$ROOT/fluent-bit-conf/bench
BENCH_INPUT=${BENCH_INPUT:-/tmp/bench-sampling-input.jsonl}
BENCH_LINES=${BENCH_LINES:-300000}
BENCH_RSS_LINES=${BENCH_RSS_LINES:-150000}
BENCH_RSS_INPUT=${BENCH_INPUT%.jsonl}-rss.jsonl
BENCH_POLICY=${BENCH_POLICY:-$CONF_DIR/s-policy.yaml}
BENCH_DECISION_WAIT=${BENCH_DECISION_WAIT:-2s}
BENCH_NUM_TRACES=${BENCH_NUM_TRACES:-200000}
BENCH_RSS_DECISION_WAIT=${BENCH_RSS_DECISION_WAIT:-10m}
BENCH_RSS_NUM_TRACES=${BENCH_RSS_NUM_TRACES:-100000}
BENCH_RUNS=${BENCH_RUNS:-null none policy lua none policy lua none policy lua rss-none rss-policy rss-none rss-policy rss-none rss-policy}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-300}
BENCH_SETTLE=${BENCH_SETTLE:-5}
WORK=${BENCH_WORK:-$(mktemp -d /tmp/bench-sampling.XXXXXX)}
mkdir -p "$WORK"

[ -x "$FLUENT_BIT" ] || { echo "not executable: $FLUENT_BIT" >&2; exit 2; }
[ -f "$PLUGIN_SO" ] || { echo "missing $PLUGIN_SO: run scripts/build-plugins.sh" >&2; exit 2; }
[ -f "$BENCH_POLICY" ] || { echo "missing $BENCH_POLICY" >&2; exit 2; }
[ -n "${LOKI_URL:-}" ] || [ -x "$RECEIVER_BIN" ] || {
  echo "missing $RECEIVER_BIN: cargo build --release -p lockstep-hosts --example loki_receiver" >&2
  exit 2
}
for c in python3 curl bc; do command -v $c >/dev/null || { echo "$c is needed" >&2; exit 2; }; done
if [ -n "${LOKI_URL:-}" ]; then
  curl -sf --max-time 5 "${LOKI_URL%/}/ready" >/dev/null || { echo "Loki at $LOKI_URL is not ready" >&2; exit 2; }
fi
# An early exit (a failed step under set -e) must not leave Fluent Bit or a receiver running.
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

if [ ! -f "$BENCH_INPUT" ]; then
  echo "generating ~$BENCH_LINES lines into $BENCH_INPUT" >&2
  python3 - "$BENCH_INPUT" "$BENCH_LINES" <<'EOF'
import json, random, sys
path, target = sys.argv[1], int(sys.argv[2])
rnd = random.Random(11)
apps = ["checkout", "payments", "search", "auth"]
paths = ["/api/cart", "/api/orders", "/api/search", "/api/login", "/api/items", "/api/pay"]
queries = ["SELECT * FROM carts WHERE user_id = $1", "UPDATE orders SET state = $2 WHERE id = $1",
           "SELECT id, name, price FROM items WHERE id = ANY($1)", "INSERT INTO payments VALUES ($1, $2, $3)"]
seq, ms = 0, 0
out = open(path, "w")
def emit(r):
    global seq, ms
    ms += 1
    rec = {"time": "2026-11-29T%02d:%02d:%02d.%03dZ" % (ms // 3600000 % 24, ms // 60000 % 60, ms // 1000 % 60, ms % 1000)}
    rec.update(r)
    rec["seq"] = seq
    seq += 1
    out.write(json.dumps(rec, separators=(",", ":")) + "\n")
def request():
    trace, app, p = "%032x" % rnd.getrandbits(128), rnd.choice(apps), rnd.choice(paths)
    user = "u%05d" % rnd.randrange(100000)
    n = rnd.randint(2, 4)
    lines = [{"level": "info", "app": app, "msg": "request started", "trace_id": trace,
              "span_id": "%016x" % rnd.getrandbits(64), "path": p, "user": user}]
    for _ in range(n - 2):
        lines.append({"level": rnd.choice(["debug", "info"]), "app": app, "msg": "db query",
                      "trace_id": trace, "span_id": "%016x" % rnd.getrandbits(64),
                      "db.statement": rnd.choice(queries), "rows": rnd.randrange(200)})
    error, slow = rnd.random() < 0.05, rnd.random() < 0.10
    d = rnd.uniform(201, 3000) if slow else rnd.uniform(1, 199.9)
    lines.append({"level": "error" if error else "info", "app": app,
                  "msg": "request failed" if error else "request finished", "trace_id": trace,
                  "span_id": lines[0]["span_id"], "path": p,
                  "status": rnd.choice([500, 502, 503]) if error else 200,
                  "duration_ms": round(d, 3)})
    return lines
inflight = []
while seq < target or inflight:
    while seq < target and len(inflight) < 8:
        inflight.append(request())
    if seq < target and rnd.random() < 0.005:
        r = {"level": "error" if rnd.random() < 0.1 else "info", "app": rnd.choice(apps),
             "msg": rnd.choice(["health check", "cache refreshed", "config reloaded"])}
        if rnd.random() < 0.5:
            r["duration_ms"] = round(rnd.uniform(201, 900) if rnd.random() < 0.1 else rnd.uniform(1, 50), 3)
        emit(r)
        continue
    i = rnd.randrange(len(inflight))
    emit(inflight[i].pop(0))
    if not inflight[i]:
        inflight.pop(i)
out.close()
EOF
fi
if [ ! -f "$BENCH_RSS_INPUT" ] || [ "$(wc -l < "$BENCH_RSS_INPUT")" -ne "$BENCH_RSS_LINES" ]; then
  head -n "$BENCH_RSS_LINES" "$BENCH_INPUT" > "$BENCH_RSS_INPUT"
fi

# The expected lines, from the input: per input, the seqs `policy` and `lua` ship.
expect() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
src, prefix = sys.argv[1], sys.argv[2]
recs = []
for l in open(src, encoding="utf-8"):
    r = json.loads(l)
    t = r.get("trace_id")
    lvl = str(r.get("level", "")).lower()
    d = r.get("duration_ms")
    # status_code ERROR <-> level error|fatal; latency: duration truncated to whole ms > 200.
    hit = lvl in ("error", "fatal") or (isinstance(d, (int, float)) and int(d) > 200)
    recs.append((r["seq"], t.lower() if isinstance(t, str) else None, hit))
kept_traces = {t for _, t, hit in recs if t and hit}
policy = [s for s, t, hit in recs if (t in kept_traces if t else hit)]
# lockstep-mirror.lua, line by line in input order (its 4096-entry memory included).
lua, mem = [], set()
for s, t, hit in recs:
    if hit:
        if t and t not in mem:
            if len(mem) >= 4096: mem = set()
            mem.add(t)
        lua.append(s)
    elif t and t in mem:
        lua.append(s)
untraced_hit = [s for s, t, hit in recs if not t and hit]
open(prefix + ".policy", "w").write("".join("%d\n" % s for s in policy))
open(prefix + ".lua", "w").write("".join("%d\n" % s for s in lua))
open(prefix + ".untraced", "w").write("".join("%d\n" % s for s in untraced_hit))
traces = {t for _, t, _ in recs if t}
print("%s: %d lines, %d traces (%d kept), %d untraced lines (%d kept alone); "
      "policy ships %d lines, lua %d" % (src, len(recs), len(traces), len(kept_traces),
      sum(1 for _, t, _ in recs if not t), len(untraced_hit), len(policy), len(lua)), file=sys.stderr)
EOF
}
expect "$BENCH_INPUT" "$WORK/expected"
expect "$BENCH_RSS_INPUT" "$WORK/expected-rss"
N=$(wc -l < "$BENCH_INPUT")
NR=$(wc -l < "$BENCH_RSS_INPUT")

# now, cpu_of, hwm_mb, rss_mb, threads_cpu, last_stored, null_records, start_sink,
# stop_fluent_bit
. "$ROOT/scripts/bench-common.sh"
# One metric of the plugin's metrics_listen, summed over its label sets ("" when down).
metric() {
  { curl -s --max-time 1 "http://127.0.0.1:$1/metrics" 2>/dev/null || true; } |
    awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF; n++ } END { if (n) printf "%d", s }'
}

# Entries of one run's stream in Loki (count_over_time).
loki_total() {
  python3 - "$LOKI_URL" "$1" <<'EOF'
import json, sys, time, urllib.parse, urllib.request
base, run = sys.argv[1].rstrip("/"), sys.argv[2]
q = 'sum(count_over_time({job="bench", run="%s"}[6h]))' % run
try:
    with urllib.request.urlopen(base + "/loki/api/v1/query?" + urllib.parse.urlencode(
            {"query": q, "time": str(time.time_ns())}), timeout=30) as r:
        res = json.load(r)["data"]["result"]
    print(int(float(res[0]["value"][1])) if res else 0)
except Exception:
    print(0)
EOF
}

# Every stored line of a run (Loki: query_range page by page; receiver: its dump) against
# the expected seqs: "entries distinct missing extra", samples of both in the run dir.
check_lines() {
  local run=$1 expected=$2 d=$3
  python3 - "${LOKI_URL:-}" "$run" "$expected" "$d" <<'EOF'
import json, re, sys, time, urllib.parse, urllib.request
base, run, expected_path, d = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3], sys.argv[4]
seq_re = re.compile(r'"seq":\s*(\d+)')
seqs, entries, nometa = [], 0, 0
if base:
    sel = '{job="bench", run="%s"}' % run
    def get(**q):
        with urllib.request.urlopen(base + "/loki/api/v1/query_range?" + urllib.parse.urlencode(q), timeout=120) as r:
            return json.load(r)["data"]["result"]
    now = time.time_ns()
    start, end, at_start = now - 6 * 3600 * 10**9, now + 10**9, 0
    while True:
        vals = sorted(((int(v[0]), v[1]) for s in get(query=sel, start=str(start), end=str(end),
                       limit="5000", direction="forward") for v in s["values"]), key=lambda v: v[0])
        if not vals: break
        skip = at_start  # entries at ts == start already read on earlier pages
        for ts, line in vals:
            if ts == start and skip:
                skip -= 1; continue
            entries += 1
            m = seq_re.search(line)
            seqs.append(int(m.group(1)) if m else -1)
        last = vals[-1][0]
        at_start = sum(1 for v in vals if v[0] == last) + (at_start if last == start else 0)
        if len(vals) < 5000: break
        start = last
else:
    for l in open(d + "/stored.jsonl"):
        e = json.loads(l)
        if e["labels"].get("run") != run: continue
        entries += 1
        m = seq_re.search(e["line"])
        seqs.append(int(m.group(1)) if m else -1)
exp = {int(l) for l in open(expected_path)}
got = set(seqs)
missing, extra = sorted(exp - got), sorted(got - exp)
with open(d + "/missing.txt", "w") as f: f.write("".join("%d\n" % s for s in missing))
with open(d + "/extra.txt", "w") as f: f.write("".join("%d\n" % s for s in extra))
print(entries, len(got), len(missing), len(extra))
EOF
}

RESULTS=$WORK/results.tsv
: > "$RESULTS"
n_run=0

run_one() {
  local kind=$1 conf input expected plugin=yes
  local wait=$BENCH_DECISION_WAIT traces=$BENCH_NUM_TRACES
  case $kind in
    none) conf=s-none.conf; input=$BENCH_INPUT; expected=$WORK/expected.all ;;
    policy) conf=s-policy.conf; input=$BENCH_INPUT; expected=$WORK/expected.policy ;;
    lua) conf=s-lua.conf; input=$BENCH_INPUT; expected=$WORK/expected.lua; plugin=no ;;
    rss-none) conf=s-none.conf; input=$BENCH_RSS_INPUT; expected=$WORK/expected-rss.all ;;
    # Nothing may reach Loki while every trace waits. Even the untraced lines decided (and
    # kept) at once do not: they are written to the same first-in first-out waiting queue
    # and swept behind the traces before them, and stay there on disk at exit.
    rss-policy) conf=s-policy.conf; input=$BENCH_RSS_INPUT; expected=$WORK/expected.nothing
      wait=$BENCH_RSS_DECISION_WAIT; traces=$BENCH_RSS_NUM_TRACES ;;
    null) conf=d-null.conf; input=$BENCH_INPUT; expected=$WORK/expected.all; plugin=no ;;
    *) echo "unknown run $kind" >&2; return 1 ;;
  esac
  [ -f "$WORK/expected.all" ] || seq 0 $((N - 1)) > "$WORK/expected.all"
  [ -f "$WORK/expected-rss.all" ] || seq 0 $((NR - 1)) > "$WORK/expected-rss.all"
  : > "$WORK/expected.nothing"
  local lines want target
  lines=$(wc -l < "$input"); want=$(wc -l < "$expected"); target=$want
  n_run=$((n_run + 1))
  local d=$WORK/$n_run-$kind
  rm -rf "$d"; mkdir -p "$d/spool"
  local bench_run=$kind-$RANDOM$RANDOM rpid="" rfd="" url port
  start_sink "$d"
  local http_port=$((24000 + RANDOM % 8000)) metrics_port=$((32000 + RANDOM % 8000))
  local args=(-c "$CONF_DIR/$conf")
  [ "$plugin" = yes ] && args=(-e "$PLUGIN_SO" "${args[@]}")
  echo "run $n_run $kind (label run=$bench_run): $FLUENT_BIT ${args[*]}  input $input ($lines lines, $want expected)  push $url" \
    "$([ "$conf" = s-policy.conf ] && echo "decision_wait $wait num_traces $traces")" >&2
  local t0; t0=$(now)
  BENCH_RUN=$bench_run BENCH_INPUT=$input RECEIVER_URL=$url RECEIVER_PORT=$port SPOOL_DIR=$d/spool \
    FB_HTTP_PORT=$http_port METRICS_PORT=$metrics_port BENCH_CONF_DIR=$CONF_DIR \
    POLICY_FILE=$BENCH_POLICY DECISION_WAIT=$wait NUM_TRACES=$traces \
    "$FLUENT_BIT" "${args[@]}" > "$d/fluent-bit.log" 2>&1 &
  local fb=$!
  local done_at="" cpu="" hwm="" rss="" got=0
  while :; do
    if ! kill -0 "$fb" 2>/dev/null; then echo "run $kind: fluent-bit exited early (see $d/fluent-bit.log)" >&2; break; fi
    if [ "$kind" = rss-policy ]; then
      # Every line taken in by the plugin (and so waiting, but for untraced ones).
      got=$(metric "$metrics_port" lockstep_loki_records_in_total); target=$lines
    elif [ "$kind" = null ]; then got=$(null_records "$http_port")
    elif [ -n "${LOKI_URL:-}" ]; then got=$(loki_total "$bench_run"); sleep 0.45
    else got=$(last_stored "$d/recv.out"); fi
    got=${got:-0}
    if [ "$got" -ge "$target" ]; then
      [ "$kind" = rss-policy ] && sleep "$BENCH_SETTLE"
      done_at=$(now); cpu=$(cpu_of "$fb"); hwm=$(hwm_mb "$fb"); rss=$(rss_mb "$fb")
      threads_cpu "$fb" > "$d/threads-cpu.tsv"; break
    fi
    if [ "$(echo "$(now) - $t0 > $BENCH_TIMEOUT" | bc)" = 1 ]; then
      echo "run $kind: only $got of $target after ${BENCH_TIMEOUT}s" >&2
      cpu=$(cpu_of "$fb"); hwm=$(hwm_mb "$fb"); rss=$(rss_mb "$fb"); break
    fi
    sleep 0.05
  done
  [ "$kind" = rss-policy ] || sleep "$BENCH_SETTLE" # late (or leaked) lines land before the count
  local waiting=-
  if [ "$plugin" = yes ]; then
    curl -s --max-time 2 "http://127.0.0.1:$metrics_port/metrics" > "$d/metrics.txt" 2>/dev/null || true
    waiting=$(metric "$metrics_port" lockstep_loki_traces_waiting); waiting=${waiting:--}
  fi
  local exit_s rc
  stop_fluent_bit "$fb" "$kind"
  if [ -z "${LOKI_URL:-}" ]; then
    exec {rfd}>&-
    wait "$rpid" || true
  else
    sleep 2 # what Loki acknowledged is queryable
  fi
  local entries=- distinct=- missing=- extra=-
  [ "$kind" = null ] || read -r entries distinct missing extra <<< "$(check_lines "$bench_run" "$expected" "$d")"
  local wall=-
  [ -n "$done_at" ] && wall=$(printf '%.2f' "$(echo "$done_at - $t0" | bc)")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n_run" "$kind" "$lines" "$want" \
    "$entries" "$distinct" "$missing" "$extra" "${cpu:--}" "$wall" "${hwm:--}" "${rss:--}" "$waiting" \
    "$exit_s" "$rc" "$d" >> "$RESULTS"
  echo "  [$kind] expected $want, stored $entries ($distinct distinct), missing $missing, not expected $extra;" \
    "CPU ${cpu:--} s, wall $wall s, VmHWM ${hwm:--} MB, VmRSS ${rss:--} MB, traces_waiting $waiting, exit $exit_s s rc $rc" >&2
  if [ -s "$d/metrics.txt" ]; then
    grep -E '^lockstep_loki_(traces_decided|traces_decided_early|policy_lines|late_lines|waiting_unreadable|records_in|entries_dropped|spool_errors)' \
      "$d/metrics.txt" | grep -v ' 0$' | sed "s/^/  [$kind] /" >&2 || true
  fi
  grep -E '\[(error|warn)\]|panic' "$d/fluent-bit.log" | grep -v 'caught signal\|service will shutdown' | head -n 20 | sed "s/^/  [$kind] /" >&2 || true
}

for r in $BENCH_RUNS; do run_one "$r"; done

python3 - "$RESULTS" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
hdr = ("#", "run", "input lines", "expected", "stored", "distinct", "missing", "not expected",
       "CPU s", "wall s", "peak RSS MB", "VmRSS MB", "traces waiting", "SIGTERM exit s", "rc")
print("\n| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
for r in rows:
    print("| " + " | ".join(r[:15]) + " |")
def med(kind, i):
    v = []
    for r in rows:
        try:
            if r[1] == kind: v.append(float(r[i]))
        except ValueError: pass
    return statistics.median(v) if v else None
print("\nmedians over the runs above")
for k in ("null", "none", "policy", "lua", "rss-none", "rss-policy"):
    cpu, wall, hwm, rss = med(k, 8), med(k, 9), med(k, 10), med(k, 11)
    if cpu is None: continue
    lines = next(int(r[2]) for r in rows if r[1] == k)
    rate = f", {lines / wall:,.0f} input records/s (wall), {lines / cpu:,.0f} per CPU s" if wall and k != "rss-policy" else ""
    print(f"  {k}: CPU {cpu:.2f} s, wall {wall:.2f} s{rate}, peak RSS {hwm:.1f} MB, VmRSS {rss:.1f} MB")
p, n, l = med("policy", 8), med("none", 8), med("lua", 8)
if p and n: print(f"CPU policy/none: {p / n:.2f} (target <= 1.0)")
if p and l: print(f"CPU policy/lua:  {p / l:.2f} (target <= 0.5)")
f = med("null", 8)
if f is not None and p and n and l:
    print(f"above the null floor ({f:.2f} s): policy {p - f:.2f} s, none {n - f:.2f} s, lua {l - f:.2f} s")
rp, rn = med("rss-policy", 11), med("rss-none", 11)
hp, hn = med("rss-policy", 10), med("rss-none", 10)
if rp is not None and rn is not None:
    print(f"RSS with every trace waiting: VmRSS {rp:.1f} MB vs {rn:.1f} MB without policy "
          f"(+{rp - rn:.1f} MB), VmHWM {hp:.1f} vs {hn:.1f} MB (+{hp - hn:.1f} MB) (target <= +64 MB)")
EOF
echo "logs: $WORK" >&2
