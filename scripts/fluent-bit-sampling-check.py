#!/usr/bin/env python3
"""Manual check: does a real Fluent Bit keep exactly the traces a golden set says it keeps?

    FLUENT_BIT=/path/to/fluent-bit scripts/fluent-bit-sampling-check.py [golden/fluent-bit]

Takes the golden set's fluent-bit.yaml (its `sampling` processors), starts the given
Fluent Bit on 127.0.0.1 with those processors under an `opentelemetry` input
(`decision_wait` shortened to 2 s, `max_traces` raised so nothing is evicted) and a
`stdout` output, POSTs every span of spans.jsonl as OTLP/JSON, waits for the decisions,
and compares the trace ids Fluent Bit emitted with the set's truth: each trace decided
from its spans with Fluent Bit's rules (computed here independently, as
crates/lockstep-hosts/src/golden.rs does for the replay). Prints both counts and every
difference; exit 0 when they are equal. Needs PyYAML (`pip install pyyaml`).
Builds and fetches nothing: bring your own Fluent Bit build.
"""
import json, os, re, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fbcheck import fluent_bit, free_port, post_traces, wait_for_port  # noqa: E402

try:
    import yaml
except ImportError:
    sys.exit("needs PyYAML: pip install pyyaml")

golden = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "golden", "fluent-bit")
fb = fluent_bit()

spans = [json.loads(l) for l in open(os.path.join(golden, "spans.jsonl")) if l.strip()]
config = yaml.safe_load(open(os.path.join(golden, "fluent-bit.yaml")))
inputs = [i for i in config["pipeline"]["inputs"] if i.get("processors", {}).get("traces")]
if len(inputs) != 1:
    sys.exit(f"{golden}/fluent-bit.yaml: expected one input with trace processors, found {len(inputs)}")
processors = inputs[0]["processors"]["traces"]


def truth():
    """Each trace's decision from its spans, with Fluent Bit 5.1.1's rules."""
    by = {}
    for s in spans:
        by.setdefault(s["trace_id"], []).append(s)
    kept = set()
    for t, ss in by.items():
        keep = True
        for p in processors:
            if p.get("name") != "sampling":
                continue
            if p["type"] == "probabilistic":
                pct = int(float(str((p.get("sampling_settings") or {}).get("sampling_percentage", 10))))
                n = int(t[:16], 16)
                keep &= (n % 1_000_000) / 10_000.0 < pct
            elif p["type"] == "tail":
                conds = p.get("conditions") or []
                def match(s, c):
                    if c["type"] == "status_code":
                        return s["status"].upper() in [x.upper() for x in c["status_codes"]]
                    if c["type"] == "latency":
                        if s["start_ns"] > s["end_ns"]:
                            return False
                        d = (s["end_ns"] - s["start_ns"]) // 1_000_000
                        lo, hi = c.get("threshold_ms_low", 0), c.get("threshold_ms_high", 0)
                        return (lo != 0 and d <= lo) or (hi != 0 and d >= hi)
                    raise SystemExit(f"condition {c['type']} needs span attributes")
                keep &= (not conds) or any(match(s, c) for s in ss for c in conds)
        if keep:
            kept.add(t)
    return set(by), kept


wait = 2
procs = json.loads(json.dumps(processors))
for p in procs:
    if p.get("type") == "tail":
        p.setdefault("sampling_settings", {})
        p["sampling_settings"]["decision_wait"] = wait
        p["sampling_settings"]["max_traces"] = 1_000_000
port = free_port()
cfg = {
    "service": {"flush": 1, "log_level": "info"},
    "pipeline": {
        "inputs": [{"name": "opentelemetry", "listen": "127.0.0.1", "port": port, "processors": {"traces": procs}}],
        "outputs": [{"name": "stdout", "match": "*"}],
    },
}
with tempfile.TemporaryDirectory() as d:
    conf = os.path.join(d, "fluent-bit.yaml")
    with open(conf, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    out_path = os.path.join(d, "out.txt")
    out = open(out_path, "w")
    proc = subprocess.Popen([fb, "-c", conf], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, out_path)
        post_traces(port, spans)
        # decided at the first tick where the whole-second age >= W: at most 2W, plus a flush
        time.sleep(2 * wait + 3)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        out.close()
    text = open(out_path).read()

traces, want = truth()
seen = {t for t in re.findall(r"[0-9a-f]{32}", text) if t in traces}
print(f"traces: {len(traces)}; kept by the golden truth: {len(want)}; emitted by Fluent Bit: {len(seen)}")
for t in sorted(want - seen):
    print(f"  truth keeps, Fluent Bit dropped: {t}")
for t in sorted(seen - want):
    print(f"  Fluent Bit kept, truth drops:    {t}")
if not seen and want:
    print("no known trace id in Fluent Bit's output; its log:\n" + text[-3000:])
print("MATCH" if seen == want else "DIFFERENT")
sys.exit(0 if seen == want else 1)
