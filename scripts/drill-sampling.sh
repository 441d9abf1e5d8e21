#!/usr/bin/env bash
# Sampling drills for lockstep_loki's `policy_file` in a real Fluent Bit against a real
# Loki (issue 21). Manual only: it needs both binaries and takes a few minutes.
#
#   FLUENT_BIT=/path/to/release/fluent-bit LOKI_BIN=/path/to/loki \
#   LOKI_CONFIG=/path/to/loki.yaml [LOKI_PORT=3100] scripts/drill-sampling.sh
#
# The script starts and stops its own Loki, as scripts/drill-feed.sh does: a copy of
# LOKI_CONFIG in the work dir with http_listen_port LOKI_PORT and grpc_listen_port
# LOKI_GRPC_PORT (default LOKI_PORT + 5996), run with `-config.expand-env=true` and
# LOKI_DATA set to a fresh directory of the work dir (a config may say `path_prefix:
# ${LOKI_DATA}`). Nothing may listen on 127.0.0.1:LOKI_PORT before (drill a starts with
# Loki down; pick a port no other drill uses meanwhile). Everything binds 127.0.0.1.
#
# Both drills feed JSON lines of bench-sampling.sh's format (requests of 2-4 lines sharing
# a trace_id, the deciding line last, ~0.5 % untraced lines, a unique `seq` in every line)
# through fluent-bit-conf/bench/s-policy.yaml (keep traces with an error line or a line
# slower than 200 ms). From the input the script computes the lines to keep (every line
# of every such trace, and the untraced lines that match alone) and, at the end of each
# drill, reads back every line of the drill's stream (query_range, label run=<drill id>)
# and compares by seq.
#
# Drill a (fluent-bit-conf/bench/d-sampling-crash.conf): a full waiting queue, then a
#   kill -9 during the catch-up.
#   1. Loki is down. A writer appends DRILL_A_LINES lines at DRILL_A_RATE lines/s to a
#      file that tail reads (tail DB file; Fluent Bit buffers on disk: storage.type
#      filesystem; Retry_Limit no_limits). lockstep_loki has spool_max_bytes SPOOL_MAX
#      and spool_segment_bytes SPOOL_SEGMENT (the waiting queue gets the same budget).
#   2. Once the writer is done and both queues are full (the main queue within two
#      segments of SPOOL_MAX, the waiting queue over a quarter of it: flushes may use
#      SPOOL_MAX less the room kept for decisions, and a Fluent Bit chunk is about a
#      quarter of that at the default rate; and flushes are answered retry), Loki
#      starts.
#   3. Once the plugin has sent DRILL_A_KILL_SENT entries (default: half the lines to
#      keep) and lines wait in the waiting queue, Fluent Bit gets kill -9; both queues
#      are inspected (LOCKSTEP_CLI).
#   4. Fluent Bit starts again with the same config, spool_dir, tail DB and buffer.
#   5. Once Fluent Bit's buffer and both queues are empty (or DRILL_TIMEOUT s), SIGTERM.
# Drill b (fluent-bit-conf/bench/d-sampling-stop.conf): a graceful stop with lines still
#   waiting. Loki is up; DRILL_B_LINES lines are piped into Fluent Bit's stdin input;
#   Fluent Bit stops by itself at the end of stdin. decision_wait DECISION_WAIT_B,
#   shutdown_grace SHUTDOWN_GRACE, Grace GRACE. Reported: how long the stop took (from
#   the end of the input to Fluent Bit's exit) and the plugin's exit line.
#
# Checks (exit 1 when one fails): every line to keep is in Loki; no line of a dropped
# trace (nor an untraced line that does not match) is; for drill a, the precondition
# (both queues full, flushes answered retry) was met; Fluent Bit exited by itself with
# both queues empty (drill b) or after the SIGTERM (drill a). Duplicates (entries stored
# more than once) are counted, not failed. Missing lines are classified by trace (every
# line missing / some) and listed in the drill's directory (missing.tsv). For drill a,
# a watcher of Fluent Bit's buffer files (chunk_monitor) tells when the plugin took each
# line, so a missing line's trace shows whether its lines reached the plugin more than
# decision_wait apart (the wait counts from a trace's first line's arrival in the
# plugin), and whether the kill came in between.
#
# Printed: lines to keep / stored (distinct), missing, dropped-trace lines stored,
# duplicates, the queues' states (from metrics_listen, and from `lockstep spool inspect`
# when LOCKSTEP_CLI is built), the stop time, the plugin's log lines that matter.
#
# Needs, already built (this script builds and fetches nothing): FLUENT_BIT (release
# 5.1.x with the Go proxy loader), LOKI_BIN, LOKI_CONFIG, PLUGIN_SO (default
# dist/lockstep_out_loki.so from scripts/build-plugins.sh: point it at a copy when dist/
# may be rebuilt during the drill). Optional: LOCKSTEP_CLI (default
# target/release/lockstep: cargo build --release -p lockstep-cli), DRILLS ("a b"),
# DRILL_A_LINES (120000), DRILL_A_RATE (2000; a Fluent Bit chunk holds about one Flush
# interval of input, up to ~2 MB, and a chunk's lines must fit the waiting queue's free
# room, about SPOOL_MAX minus the room kept for decisions: a high rate shows what a
# bigger chunk does, see BENCHMARKS.md), SPOOL_MAX (2M), SPOOL_SEGMENT (256K),
# DECISION_WAIT_A (3s), DRILL_A_KILL_SENT, DRILL_B_LINES (120000), DECISION_WAIT_B (3s),
# SHUTDOWN_GRACE (20s), GRACE (5), DRILL_POLICY (fluent-bit-conf/bench/s-policy.yaml),
# DRILL_TIMEOUT (600 s per phase), DRILL_WORK (default: a fresh mktemp dir).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
: "${FLUENT_BIT:?set FLUENT_BIT to a release build of Fluent Bit 5.1.x}"
: "${LOKI_BIN:?set LOKI_BIN to a Loki binary}"
: "${LOKI_CONFIG:?set LOKI_CONFIG to its config file}"
PLUGIN_SO=${PLUGIN_SO:-$ROOT/dist/lockstep_out_loki.so}
LOCKSTEP_CLI=${LOCKSTEP_CLI:-$ROOT/target/release/lockstep}
PORT=${LOKI_PORT:-3100} GRPC_PORT=${LOKI_GRPC_PORT:-$((${LOKI_PORT:-3100} + 5996))}
LOKI=http://127.0.0.1:$PORT
DRILLS=${DRILLS:-a b}
A_LINES=${DRILL_A_LINES:-120000} A_RATE=${DRILL_A_RATE:-2000}
SPOOL_MAX=${SPOOL_MAX:-2M} SPOOL_SEGMENT=${SPOOL_SEGMENT:-256K}
WAIT_A=${DECISION_WAIT_A:-3s}
B_LINES=${DRILL_B_LINES:-120000} WAIT_B=${DECISION_WAIT_B:-3s}
export SHUTDOWN_GRACE=${SHUTDOWN_GRACE:-20s} GRACE=${GRACE:-5}
export POLICY_FILE=${DRILL_POLICY:-$ROOT/fluent-bit-conf/bench/s-policy.yaml}
TIMEOUT=${DRILL_TIMEOUT:-600}
export BENCH_CONF_DIR=$ROOT/fluent-bit-conf/bench
W=${DRILL_WORK:-$(mktemp -d /tmp/drill-sampling.XXXXXX)}
mkdir -p "$W"
echo "work dir $W" >&2

[ -x "$FLUENT_BIT" ] || { echo "not executable: $FLUENT_BIT" >&2; exit 2; }
[ -x "$LOKI_BIN" ] || { echo "not executable: $LOKI_BIN" >&2; exit 2; }
[ -f "$PLUGIN_SO" ] || { echo "missing $PLUGIN_SO: run scripts/build-plugins.sh" >&2; exit 2; }
[ -f "$POLICY_FILE" ] || { echo "missing $POLICY_FILE" >&2; exit 2; }
for c in python3 curl bc; do command -v $c >/dev/null || { echo "$c is needed" >&2; exit 2; }; done
if curl -s --max-time 2 -o /dev/null "$LOKI/ready"; then
  echo "something already listens on 127.0.0.1:$PORT: drill a needs Loki down at first" >&2
  exit 2
fi
[ -x "$LOCKSTEP_CLI" ] || { echo "($LOCKSTEP_CLI not built: no spool inspect)" >&2; LOCKSTEP_CLI=""; }
# An early exit (a failed step under set -e) must not leave Fluent Bit, Loki or the
# writer running.
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

# now, cpu_of, hwm_mb, rss_mb, stop_fluent_bit (SIGTERM, timed)
. "$ROOT/scripts/bench-common.sh"
bytes() { numfmt --from=iec "${1%B}"; }
seconds() { # a duration of the plugin's form (500ms, 3s, 2m) in seconds
  case $1 in *ms) echo "scale=3; ${1%ms} / 1000" | bc ;; *s) echo "${1%s}" ;;
    *m) echo "${1%m} * 60" | bc ;; *h) echo "${1%h} * 3600" | bc ;; *) echo "$1" ;; esac
}
# One metric of the plugin's metrics_listen ($METRICS_PORT), summed over its label sets
# (those containing $2 when given; "" when the plugin does not answer).
metric() {
  { curl -s --max-time 2 "http://127.0.0.1:$METRICS_PORT/metrics" 2>/dev/null || true; } |
    awk -v m="$1" -v l="${2:-}" '($1 == m || index($1, m "{") == 1) && index($1, l) { s += $NF; n++ }
      END { if (n) printf "%d", s }'
}
# The metrics that tell the queues' state, on one line.
queues() {
  local t
  t=$( { curl -s --max-time 2 "http://127.0.0.1:$METRICS_PORT/metrics" 2>/dev/null || true; } | tee "$1")
  awk '
    function add(k) { v[k] += $NF }
    $1 ~ /^lockstep_loki_queue_records[{]/ { add("main_records") }
    $1 ~ /^lockstep_loki_queue_disk_bytes[{]/ { add("main_disk_bytes") }
    $1 ~ /^lockstep_loki_waiting_records[{]/ { add("waiting_records") }
    $1 ~ /^lockstep_loki_waiting_bytes[{]/ { add("waiting_bytes") }
    $1 ~ /^lockstep_loki_traces_waiting[{]/ { add("traces_waiting") }
    $1 ~ /^lockstep_loki_decisions_pinned[{]/ { add("decisions_pinned") }
    $1 ~ /^lockstep_loki_records_in_total[{]/ { add("records_in") }
    $1 ~ /^lockstep_loki_entries_sent_total[{]/ { add("entries_sent") }
    $1 ~ /^lockstep_loki_chunks_total[{].*result="retry"/ { add("chunks_retry") }
    $1 ~ /^lockstep_loki_pinned_full_total[{]/ { add("pinned_full") }
    $1 ~ /^lockstep_loki_decision_write_failures_total[{]/ { add("decision_write_failures") }
    $1 ~ /^lockstep_loki_traces_held[{]/ { add("traces_held") }
    $1 ~ /^lockstep_loki_held_chunks_total[{].*outcome="refused"/ { add("held_chunks_refused") }
    $1 ~ /^lockstep_loki_held_chunks_total[{].*outcome="taken"/ { add("held_chunks_taken") }
    $1 ~ /^lockstep_loki_held_chunks_total[{].*outcome="expired"/ { add("held_chunks_expired") }
    $1 ~ /^lockstep_loki_held_chunks_total[{].*outcome="overflow"/ { add("held_chunks_overflow") }
    $1 ~ /^lockstep_loki_held_traces_forced_total[{]/ { add("held_forced") }
    $1 ~ /^lockstep_loki_waiting_requeued_total[{]/ { add("requeued") }
    $1 ~ /^lockstep_loki_policy_lines_total[{].*decision="drop",by="late"/ { add("late_dropped") }
    END { for (k in v) printf "%s=%d ", k, v[k] }' <<< "$t" | tr ' ' '\n' | sort | tr '\n' ' '
}
# Chunks in Fluent Bit's own buffer (its HTTP server on $FB_HTTP_PORT; "" when down).
fb_chunks() {
  { curl -s --max-time 2 "http://127.0.0.1:$FB_HTTP_PORT/api/v1/storage" 2>/dev/null || true; } |
    python3 -c 'import json,sys
try: print(json.load(sys.stdin)["storage_layer"]["chunks"]["total_chunks"])
except Exception: print("")'
}
inspect() { # $1 spool dir, $2 output file
  if [ -n "$LOCKSTEP_CLI" ]; then "$LOCKSTEP_CLI" spool inspect "$1" > "$2" 2>&1 || true; fi
}
inspect_line() { # "main N records, waiting M records" from an inspect output
  [ -s "$1" ] || { echo "(no spool inspect)"; return; }
  awk '/^waiting queue/ { w = 1 } /^records queued/ { if (w) wr = $3; else mr = $3 }
       END { printf "main queue %s records, waiting queue %s records (lockstep spool inspect)", mr, wr }' "$1"
}
plugin_log() { # the plugin's log lines that matter, from a Fluent Bit log
  grep -E 'lockstep_loki|\[(error|warn)\]|panic' "$1" |
    grep -E 'sampling by trace|recovered|stopped:|stay in the waiting|answering retry|full|cannot|dropping|error|panic|breaker|Loki answers' |
    grep -v 'caught signal' | sed 's/^/    /' | head -n 25 || true
}

# --- the input and what it must ship ---------------------------------------------------
# bench-sampling.sh's generator (same seed): requests of 2-4 lines sharing a random trace
# id, up to 8 interleaved, the deciding line last; ~0.5 % untraced lines; `seq` unique.
gen_input() { # $1 path, $2 lines, $3 seed
  python3 - "$1" "$2" "$3" <<'EOF'
import json, random, sys
path, target, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
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
}

# The lines to keep in an input file (the same rules as check_loki below).
count_keep() {
  python3 - "$1" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
def hit(r):
    d = r.get("duration_ms")
    return str(r.get("level", "")).lower() in ("error", "fatal") or (isinstance(d, (int, float)) and int(d) > 200)
kept = {r["trace_id"].lower() for r in recs if isinstance(r.get("trace_id"), str) and hit(r)}
print(sum(1 for r in recs if (r["trace_id"].lower() in kept if isinstance(r.get("trace_id"), str) else hit(r))))
EOF
}

# Every line of the drill's stream in Loki against the input: prints one summary line
# "to_keep stored_kept missing dropped_stored entries distinct duplicates traces_kept
# traces_whole_missing traces_part_missing" and writes missing.tsv / dropped.tsv in $3.
# With $4 (chunk_monitor's output), $5 (decision_wait in seconds) and $6 (the kill's unix
# time), each kept trace's lines are placed in Fluent Bit's chunks: how far apart the
# plugin took them (the chunks' deletion times), and whether the kill came in between;
# a second line "split_traces split_missing unsplit_missing across_kill unknown" sums that
# up (unknown: traces with lines missing, some in a chunk chunk_monitor did not see)
# (written to split.txt too).
check_loki() { # $1 run label, $2 input, $3 dir [, $4 chunks.tsv, $5 wait s, $6 kill time]
  python3 - "$LOKI" "$@" <<'EOF'
import bisect, collections, json, re, sys, time, urllib.parse, urllib.request
base, run, src, d = sys.argv[1:5]
chunks_path = sys.argv[5] if len(sys.argv) > 5 else ""
wait_s = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
kill_t = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
recs = []
for l in open(src, encoding="utf-8"):
    r = json.loads(l)
    t = r.get("trace_id")
    lvl = str(r.get("level", "")).lower()
    dur = r.get("duration_ms")
    # status_code ERROR <-> level error|fatal; latency: duration truncated to whole ms > 200.
    hit = lvl in ("error", "fatal") or (isinstance(dur, (int, float)) and int(dur) > 200)
    recs.append((r["seq"], t.lower() if isinstance(t, str) else None, hit, r.get("msg", "")))
kept_traces = {t for _, t, hit, _ in recs if t and hit}
keep = {s for s, t, hit, _ in recs if (t in kept_traces if t else hit)}
seq_re = re.compile(r'"seq":\s*(\d+)')
sel = '{job="drill", run="%s"}' % run
def get(**q):
    with urllib.request.urlopen(base + "/loki/api/v1/query_range?" + urllib.parse.urlencode(q), timeout=120) as r:
        return json.load(r)["data"]["result"]
now = time.time_ns()
start, end, at_start = now - 6 * 3600 * 10**9, now + 10**9, 0
seqs = []
while True:
    vals = sorted(((int(v[0]), v[1]) for s in get(query=sel, start=str(start), end=str(end),
                   limit="5000", direction="forward") for v in s["values"]), key=lambda v: v[0])
    if not vals: break
    skip = at_start  # entries at ts == start already read on earlier pages
    for ts, line in vals:
        if ts == start and skip:
            skip -= 1; continue
        m = seq_re.search(line)
        seqs.append(int(m.group(1)) if m else -1)
    last = vals[-1][0]
    at_start = sum(1 for v in vals if v[0] == last) + (at_start if last == start else 0)
    if len(vals) < 5000: break
    start = last
got = collections.Counter(seqs)
missing = keep - set(got)
dropped = set(got) - keep
# When the plugin took each line: its Fluent Bit chunk's deletion time.
ranges = []
if chunks_path:
    for l in open(chunks_path):
        name, first, gone, lo, hi, n = l.rstrip("\n").split("\t")
        if int(n) > 0 and gone != "-":
            ranges.append((int(lo), int(hi), float(gone)))
    ranges.sort()
los = [r[0] for r in ranges]
def taken(s):
    i = bisect.bisect_right(los, s) - 1
    return ranges[i][2] if i >= 0 and ranges[i][0] <= s <= ranges[i][1] else None
by_trace = collections.defaultdict(list)
for s, t, hit, msg in recs:
    if t in kept_traces: by_trace[t].append((s, hit, msg))
whole = part = split_n = split_miss = unsplit_miss = across = unknown = 0
with open(d + "/missing.tsv", "w") as f:
    f.write("trace_id\tlines\tmissing\ttaken s apart\tkill between\tmissing seqs (msg)\n")
    for t, lines in by_trace.items():
        miss = [(s, msg) for s, _, msg in lines if s in missing]
        ts = [taken(s) for s, _, _ in lines]
        spread = kill = "-"
        if ranges and None not in ts:
            spread = max(ts) - min(ts)
            kill = "yes" if kill_t and min(ts) < kill_t < max(ts) else "no"
            split = spread > wait_s
            split_n += split
            if miss:
                if split: split_miss += 1
                else: unsplit_miss += 1
                across += kill == "yes"
            spread = "%.1f" % spread
        elif ranges and miss:
            unknown += 1
        if not miss: continue
        if len(miss) == len(lines): whole += 1
        else: part += 1
        f.write("%s\t%d\t%d\t%s\t%s\t%s\n" % (t, len(lines), len(miss), spread, kill,
                " ".join("%d(%s)" % m for m in miss)))
    for s, t, hit, msg in recs:
        if not t and s in missing: f.write("-\t1\t1\t-\t-\t%d(%s)\n" % (s, msg))
with open(d + "/dropped.tsv", "w") as f:
    for s, t, hit, msg in recs:
        if s in dropped: f.write("%d\t%s\t%s\n" % (s, t or "-", msg))
entries = sum(got.values())
print(len(keep), len(keep & set(got)), len(missing), len(dropped), entries, len(got),
      entries - len(got), len(kept_traces), whole, part)
if ranges:
    line = "%d %d %d %d %d" % (split_n, split_miss, unsplit_miss, across, unknown)
    open(d + "/split.txt", "w").write(line + "\n")
    print(line)
EOF
}

# Fluent Bit's buffer chunks over time (storage.type filesystem: one file per chunk, deleted
# once the output answered ok): every 0.05 s, each new chunk file's seqs (read from its
# msgpack) and, once it is gone, when. So a line's chunk tells when the plugin took it
# (a chunk taken between two looks is not seen: its lines' time is unknown), and a trace's lines tell how far apart they were taken.
# Writes "chunk first_seen gone min_seq max_seq lines" rows (unix seconds) to $2.
chunk_monitor() { # $1 Fluent Bit's storage.path, $2 output
  exec python3 - "$1" "$2" <<'EOF'
import os, re, signal, struct, sys, time
root, out = sys.argv[1], sys.argv[2]
pat = re.compile(rb"\xa3seq(?:([\x00-\x7f])|\xcc(.)|\xcd(..)|\xce(....))", re.S)
seen = {}
def seqs(path):
    with open(path, "rb") as f: data = f.read()
    r = []
    for m in pat.finditer(data):
        a, b, c, d = m.groups()
        r.append(a[0] if a else b[0] if b else struct.unpack(">H", c)[0] if c else struct.unpack(">I", d)[0])
    return r
def dump():
    with open(out + ".tmp", "w") as f:
        for p, e in seen.items():
            f.write("%s\t%.2f\t%s\t%d\t%d\t%d\n" % (os.path.basename(p), e["first"],
                    "%.2f" % e["gone"] if e["gone"] else "-", e["min"], e["max"], e["n"]))
    os.replace(out + ".tmp", out)
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
last_read, last_dump = {}, 0.0
while not stop:
    now, present = time.time(), set()
    for dp, _, names in os.walk(root):
        for n in names:
            if not n.endswith(".flb"): continue
            p = os.path.join(dp, n)
            present.add(p)
            e = seen.get(p)
            # Read at once when new; a chunk is written to for about one Flush interval:
            # read again while young, at once while it showed no line yet.
            if e is None or (now - e["first"] < 5 and (e["n"] == 0 or now - last_read[p] >= 0.25)):
                try: v = seqs(p)
                except OSError: continue
                last_read[p] = now
                if e is None: e = seen[p] = {"first": now, "gone": None}
                if v: e.update(min=min(v), max=max(v), n=len(v))
                else: e.update(min=-1, max=-1, n=0)
    for p, e in seen.items():
        if e["gone"] is None and p not in present: e["gone"] = now
    if now - last_dump >= 1:
        dump(); last_dump = now
    time.sleep(0.05)
dump()
EOF
}

# --- Loki --------------------------------------------------------------------------------
LOKI_PID=""
start_loki() {
  export LOKI_DATA=$W/loki-data
  mkdir -p "$LOKI_DATA"
  sed -e "s/^\( *\)http_listen_port: .*/\1http_listen_port: $PORT/" \
      -e "s/^\( *\)grpc_listen_port: .*/\1grpc_listen_port: $GRPC_PORT/" "$LOKI_CONFIG" > "$W/loki.yaml"
  (cd "$LOKI_DATA" && exec "$LOKI_BIN" -config.file="$W/loki.yaml" -config.expand-env=true) \
    >> "$W/loki.log" 2>&1 &
  LOKI_PID=$!
  for _ in $(seq 240); do
    curl -sf --max-time 1 "$LOKI/ready" >/dev/null 2>&1 && return 0
    kill -0 "$LOKI_PID" 2>/dev/null || { echo "Loki exited (see $W/loki.log)" >&2; return 1; }
    sleep 0.5
  done
  echo "Loki not ready after 120 s (see $W/loki.log)" >&2; return 1
}

FAILED=0
fail() { echo "  FAIL: $*"; FAILED=1; }
SUMMARY=()

# --- drill a -------------------------------------------------------------------------------
drill_a() {
  local d=$W/a; mkdir -p "$d"
  export DRILL_INPUT=$d/input.jsonl TAIL_DB=$d/tail.db FB_STORAGE=$d/fb-storage SPOOL_DIR=$d/spool
  export SPOOL_MAX SPOOL_SEGMENT DECISION_WAIT=$WAIT_A LOKI_PUSH_URL=$LOKI/loki/api/v1/push
  export DRILL_RUN=a-$RANDOM$RANDOM FB_HTTP_PORT=$((24000 + RANDOM % 4000)) METRICS_PORT=$((28000 + RANDOM % 4000))
  gen_input "$d/source.jsonl" "$A_LINES" 21
  : > "$DRILL_INPUT"
  local n; n=$(wc -l < "$d/source.jsonl")
  local keep_n; keep_n=$(count_keep "$d/source.jsonl")
  local kill_sent=${DRILL_A_KILL_SENT:-$((keep_n / 2))}
  local max_b seg_b; max_b=$(bytes "$SPOOL_MAX"); seg_b=$(bytes "$SPOOL_SEGMENT")
  echo "== drill a (run=$DRILL_RUN): $n lines at $A_RATE/s, $keep_n to keep; spool_max_bytes $SPOOL_MAX," \
    "spool_segment_bytes $SPOOL_SEGMENT, decision_wait $WAIT_A; Loki down; kill -9 after $kill_sent sent"
  # The writer: A_RATE lines a second, in tenths of a second.
  python3 - "$d/source.jsonl" "$DRILL_INPUT" "$A_RATE" <<'PY' &
import sys, time
src, dst, rate = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(src).readlines()
out = open(dst, "a")
t0, n = time.monotonic(), 0
while n < len(lines):
    due = min(len(lines), int((time.monotonic() - t0) * rate) + rate // 10)
    out.writelines(lines[n:due]); out.flush(); n = due
    time.sleep(0.1)
PY
  local writer=$!
  mkdir -p "$FB_STORAGE"
  chunk_monitor "$FB_STORAGE" "$d/chunks.tsv" &
  local monitor=$!
  "$FLUENT_BIT" -e "$PLUGIN_SO" -c "$BENCH_CONF_DIR/d-sampling-crash.conf" > "$d/fb1.log" 2>&1 &
  local fb=$! t0; t0=$(now)
  # 1-2: until the writer is done and both queues are full.
  local full="" q mb wb retry0 retry
  while :; do
    kill -0 "$fb" 2>/dev/null || { fail "drill a: fluent-bit exited early (see $d/fb1.log)"; return; }
    if ! kill -0 "$writer" 2>/dev/null; then
      mb=$(metric lockstep_loki_queue_disk_bytes); wb=$(metric lockstep_loki_waiting_bytes)
      if [ -n "$mb" ] && [ "$mb" -ge $((max_b - 2 * seg_b)) ] && [ "${wb:-0}" -ge $((max_b / 4)) ]; then
        # Full, and flushes are answered retry.
        retry0=$(metric lockstep_loki_chunks_total 'result="retry"')
        sleep 4
        retry=$(metric lockstep_loki_chunks_total 'result="retry"')
        if [ "${retry:-0}" -gt "${retry0:-0}" ]; then full=yes; break; fi
      fi
    fi
    if [ "$(echo "$(now) - $t0 > $TIMEOUT" | bc)" = 1 ]; then break; fi
    sleep 1
  done
  wait "$writer" || true
  q=$(queues "$d/metrics-full.txt")
  local fbc; fbc=$(fb_chunks)
  local t_full; t_full=$(printf '%.0f' "$(echo "$(now) - $t0" | bc)")
  echo "  ${full:+queues full }after ${t_full} s: $q; Fluent Bit's buffer: ${fbc:-?} chunks"
  [ -n "$full" ] || fail "drill a: the queues did not fill (or flushes were not answered retry) within $TIMEOUT s"
  # 2-3: Loki up; kill -9 during the catch-up.
  start_loki
  local t_loki; t_loki=$(now)
  echo "  Loki up after $(printf '%.1f' "$(echo "$t_loki - $t0" | bc)") s"
  # The kill comes once kill_sent entries are out and lines wait in the waiting queue.
  local sent=0 wr tw
  while :; do
    q=$(queues "$d/metrics-kill.txt")
    sent=$(sed -n 's/.*entries_sent=\([0-9]*\).*/\1/p' <<< "$q")
    wr=$(sed -n 's/.*waiting_records=\([0-9]*\).*/\1/p' <<< "$q")
    tw=$(sed -n 's/.*traces_waiting=\([0-9]*\).*/\1/p' <<< "$q")
    [ "${sent:-0}" -ge "$kill_sent" ] && [ "${wr:-0}" -gt 0 ] && [ "${tw:-0}" -gt 0 ] && break
    kill -0 "$fb" 2>/dev/null || { fail "drill a: fluent-bit exited before the kill (see $d/fb1.log)"; return; }
    if [ "$(echo "$(now) - $t_loki > $TIMEOUT" | bc)" = 1 ]; then fail "drill a: only $sent sent after $TIMEOUT s"; break; fi
    sleep 0.2
  done
  kill -KILL "$fb"; wait "$fb" 2>/dev/null || true
  local t_kill; t_kill=$(date +%s.%N)
  echo "  kill -9 $(printf '%.1f' "$(echo "$t_kill - $t_loki" | bc)") s after Loki's start; just before it: $q"
  inspect "$SPOOL_DIR" "$d/inspect-kill.txt"
  echo "  on disk after the kill: $(inspect_line "$d/inspect-kill.txt"); Fluent Bit's buffer: $(find "$FB_STORAGE" -name '*.flb' | wc -l) chunk files"
  # 4-5: the restart, until everything is delivered.
  "$FLUENT_BIT" -e "$PLUGIN_SO" -c "$BENCH_CONF_DIR/d-sampling-crash.conf" > "$d/fb2.log" 2>&1 &
  fb=$!
  local t_re; t_re=$(now) empty=0
  while :; do
    kill -0 "$fb" 2>/dev/null || { fail "drill a: the restarted fluent-bit exited (see $d/fb2.log)"; return; }
    fbc=$(fb_chunks)
    local mr wr tw
    mr=$(metric lockstep_loki_queue_records); wr=$(metric lockstep_loki_waiting_records)
    tw=$(metric lockstep_loki_traces_waiting)
    if [ "$fbc" = 0 ] && [ "$mr" = 0 ] && [ "$wr" = 0 ] && [ "$tw" = 0 ]; then
      empty=$((empty + 1)); [ "$empty" -ge 3 ] && break
    else
      empty=0
    fi
    if [ "$(echo "$(now) - $t_re > $TIMEOUT" | bc)" = 1 ]; then
      fail "drill a: not drained $TIMEOUT s after the restart (Fluent Bit chunks ${fbc:-?}, main $mr, waiting $wr, traces waiting $tw)"
      break
    fi
    sleep 1
  done
  q=$(queues "$d/metrics-end.txt")
  echo "  drained $(printf '%.1f' "$(echo "$(now) - $t_re" | bc)") s after the restart: $q"
  local in1 in2
  in1=$(awk '$1 ~ /^lockstep_loki_records_in_total[{]/ {s += $NF} END {printf "%d", s}' "$d/metrics-kill.txt")
  in2=$(awk '$1 ~ /^lockstep_loki_records_in_total[{]/ {s += $NF} END {printf "%d", s}' "$d/metrics-end.txt")
  echo "  lines taken by the plugin: $in1 (first run, last scrape before the kill) + $in2 (restart)" \
    "= $((in1 + in2)) of $n written (more: chunks taken twice; fewer: taken after the last scrape)"
  local exit_s rc
  stop_fluent_bit "$fb" "a"
  inspect "$SPOOL_DIR" "$d/inspect-end.txt"
  kill -TERM "$monitor"; wait "$monitor" || true
  sleep 2 # what Loki acknowledged is queryable
  local keep got missing dropped entries distinct dups traces whole part res
  local split=- split_miss=- unsplit_miss=- across=- unknown=-
  res=$(check_loki "$DRILL_RUN" "$d/source.jsonl" "$d" "$d/chunks.tsv" "$(seconds "$WAIT_A")" "$t_kill")
  read -r keep got missing dropped entries distinct dups traces whole part <<< "$(head -n 1 <<< "$res")"
  [ "$(wc -l <<< "$res")" -lt 2 ] || read -r split split_miss unsplit_miss across unknown <<< "$(tail -n 1 <<< "$res")"
  echo "  Loki: to keep $keep lines ($traces traces + untraced), stored $got; missing $missing" \
    "(traces with every line missing: $whole, with some: $part); dropped-trace lines stored $dropped;" \
    "entries $entries, distinct $distinct, duplicates $dups"
  echo "  kept traces whose lines the plugin took more than decision_wait apart (Fluent Bit" \
    "chunks' deletion times): $split; with lines missing: $split_miss of them (the kill in" \
    "between: $across), $unsplit_miss among the other kept traces; $unknown with lines missing" \
    "and some lines in a chunk not seen"
  echo "  SIGTERM stop took $exit_s s (rc $rc); left: $(inspect_line "$d/inspect-end.txt")"
  echo "  plugin metrics (first run, at the kill / second run, at the end):"
  grep -hE '^lockstep_loki_(traces_decided|traces_decided_early|policy_lines|late_lines|pinned_full|decision_write_failures|waiting_unreadable|quarantined|chunks_total|entries_dropped|spool_errors)' \
    "$d/metrics-kill.txt" | grep -v ' 0$' | sed 's/^/    1: /' || true
  grep -hE '^lockstep_loki_(traces_decided|traces_decided_early|policy_lines|late_lines|pinned_full|decision_write_failures|waiting_unreadable|quarantined|chunks_total|entries_dropped|spool_errors)' \
    "$d/metrics-end.txt" | grep -v ' 0$' | sed 's/^/    2: /' || true
  echo "  plugin log, first run:"; plugin_log "$d/fb1.log"
  echo "  plugin log, restart:"; plugin_log "$d/fb2.log"
  SUMMARY+=("a: to keep $keep, stored $got, missing $missing (kept traces with lines missing: $((whole + part)): taken more than decision_wait apart $split_miss, within it $unsplit_miss, not known $unknown), dropped-trace lines stored $dropped, duplicates $dups; kill -9 at $sent sent; SIGTERM stop $exit_s s")
  [ "$missing" = 0 ] || fail "drill a: $missing lines to keep are not in Loki (see $d/missing.tsv)"
  [ "$dropped" = 0 ] || fail "drill a: $dropped lines of dropped traces are in Loki (see $d/dropped.tsv)"
  [ "$exit_s" != HANG ] || fail "drill a: fluent-bit did not stop within 30 s of SIGTERM"
}

# --- drill b -------------------------------------------------------------------------------
drill_b() {
  local d=$W/b; mkdir -p "$d"
  export SPOOL_DIR=$d/spool DECISION_WAIT=$WAIT_B LOKI_PUSH_URL=$LOKI/loki/api/v1/push
  export DRILL_RUN=b-$RANDOM$RANDOM METRICS_PORT=$((28000 + RANDOM % 4000))
  gen_input "$d/input.jsonl" "$B_LINES" 22
  local n; n=$(wc -l < "$d/input.jsonl")
  if ! curl -sf --max-time 2 "$LOKI/ready" >/dev/null; then start_loki; fi
  echo "== drill b (run=$DRILL_RUN): $n lines through stdin, decision_wait $WAIT_B, shutdown_grace $SHUTDOWN_GRACE, Grace $GRACE"
  mkfifo "$d/stdin"
  "$FLUENT_BIT" -e "$PLUGIN_SO" -c "$BENCH_CONF_DIR/d-sampling-stop.conf" < "$d/stdin" > "$d/fb.log" 2>&1 &
  local fb=$! t0; t0=$(now)
  cat "$d/input.jsonl" > "$d/stdin"
  local t_eof; t_eof=$(now)
  # The last scrape before the plugin's exit shows what was still waiting.
  local q="" q2 q_in=""
  while kill -0 "$fb" 2>/dev/null; do
    q2=$(queues "$d/metrics.tmp")
    if [ -n "$q2" ]; then q=$q2; cp "$d/metrics.tmp" "$d/metrics-last.txt"; fi
    if [ -z "$q_in" ] && [[ $q2 == *"records_in=$n "* ]]; then q_in=$q2; fi
    sleep 0.2
    if [ "$(echo "$(now) - $t_eof > 120" | bc)" = 1 ]; then
      fail "drill b: fluent-bit still running 120 s after the end of its input: killing it"
      kill -KILL "$fb"; break
    fi
  done
  local rc=0; wait "$fb" || rc=$?
  local t_exit; t_exit=$(now)
  local stop; stop=$(printf '%.2f' "$(echo "$t_exit - $t_eof" | bc)")
  inspect "$SPOOL_DIR" "$d/inspect-end.txt"
  sleep 2
  local keep got missing dropped entries distinct dups traces whole part
  read -r keep got missing dropped entries distinct dups traces whole part <<< "$(check_loki "$DRILL_RUN" "$d/input.jsonl" "$d")"
  echo "  input written in $(printf '%.2f' "$(echo "$t_eof - $t0" | bc)") s; Fluent Bit exited $stop s after the end of its input (rc $rc)"
  echo "  when the plugin had taken every line: ${q_in:-(not seen)}"
  echo "  last metrics before the exit: $q"
  echo "  Loki: to keep $keep lines ($traces traces + untraced), stored $got; missing $missing" \
    "(traces with every line missing: $whole, with some: $part); dropped-trace lines stored $dropped;" \
    "entries $entries, distinct $distinct, duplicates $dups"
  echo "  left on disk: $(inspect_line "$d/inspect-end.txt")"
  echo "  Fluent Bit / plugin log at the stop:"
  grep -E 'end of file|service will shutdown|pausing all inputs|stopped:|stay in the waiting|\[(error|warn)\]|panic' "$d/fb.log" |
    grep -v 'caught signal' | sed 's/^/    /' | head -n 20 || true
  SUMMARY+=("b: to keep $keep, stored $got, missing $missing, dropped-trace lines stored $dropped, duplicates $dups; stop $stop s after the end of the input (rc $rc)")
  [ "$missing" = 0 ] || fail "drill b: $missing lines to keep are not in Loki (see $d/missing.tsv)"
  [ "$dropped" = 0 ] || fail "drill b: $dropped lines of dropped traces are in Loki (see $d/dropped.tsv)"
  [ "$rc" = 0 ] || fail "drill b: fluent-bit exited with $rc"
  if grep -q 'stay in the waiting' "$d/fb.log"; then fail "drill b: lines stayed in the waiting queue at the exit"; fi
  if [ -s "$d/inspect-end.txt" ] && ! inspect_line "$d/inspect-end.txt" | grep -q 'main queue 0 records, waiting queue 0 records'; then
    fail "drill b: records left on disk: $(inspect_line "$d/inspect-end.txt")"
  fi
  return 0
}

for x in $DRILLS; do
  case $x in
    a) drill_a ;;
    b) drill_b ;;
    *) echo "unknown drill $x" >&2; exit 2 ;;
  esac
done
if [ -n "$LOKI_PID" ]; then kill "$LOKI_PID" 2>/dev/null || true; wait "$LOKI_PID" 2>/dev/null || true; fi
echo "== summary"
printf '  %s\n' "${SUMMARY[@]}"
echo "logs: $W"
[ "$FAILED" = 0 ] && echo "all checks passed" || echo "SOME CHECKS FAILED"
exit "$FAILED"
