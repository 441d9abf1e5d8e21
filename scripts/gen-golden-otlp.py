#!/usr/bin/env python3
"""Regenerates golden/otlp (deterministic); run as `scripts/gen-golden.py --otlp [DIR]`
(which hands it the four-schema generator's writer).

The logs arrive through Fluent Bit's `opentelemetry` input (shared/facts/fluent-bit-otlp-logs.md):
each line of events.jsonl is one log event as an output receives it, `{"time_ns", "metadata":
{"otlp": {...}}, "body": {...}, "group": {...}}`, with the trace context, severity and
attributes in the metadata and the resource (service.name, ...) and scope in `group`, the
body of the group-start record Fluent Bit emits before the records of one resource/scope. `{"$bin": "<hex>"}` stands for a msgpack bin holding those bytes (trace_id 16,
span_id 8). A string body is `{"log": "<text>"}`, a kvlist body is the map itself.

Per request: detail lines (request started, db query, ...; DEBUG/INFO, no duration), then
the root service's summary line (17 ERROR if any span of the trace is ERROR, else 9 INFO)
carrying the root span's duration, in `otlp.attributes.duration_ms` (frontend, payments)
or in a kvlist body `{"msg", "latency_ms"}` (checkout, inventory); sometimes one detail
line after it. The root span covers its children, so the summary line's duration is the
trace's duration. Lines are written in time order (strictly increasing), so requests that
overlap interleave.

The policy is golden/four-schemas' (errors, slower than 200 ms exclusive, 10 % FNV
baseline); every trace's decision is computed here from spans.jsonl alone and printed.
"""
import json, os, random
from fractions import Fraction

BASE = 1_797_000_000 * 10**9

# service -> (where its summary line carries the duration, the OTLP path it sends by)
# "attrs": otlp.attributes.duration_ms; "body": kvlist body latency_ms.
# "json": OTLP/HTTP JSON (no otlp.timestamp, no trace_flags);
# "pb": OTLP protobuf (otlp.timestamp and otlp.trace_flags always present).
SERVICES = {
    "frontend": ("attrs", "json"),
    "checkout": ("body", "pb"),
    "payments": ("attrs", "pb"),
    "inventory": ("body", "json"),
}
ROUTES = {
    "frontend": ["/", "/cart", "/product/{id}"],
    "checkout": ["/checkout", "/checkout/confirm"],
    "payments": ["/charge", "/refund"],
    "inventory": ["/stock/{sku}", "/reserve"],
}
DETAIL = {
    "frontend": [("render template", 5), ("session loaded", 9)],
    "checkout": [("cart validated", 9), ("shipping quote", 5)],
    "payments": [("card tokenized", 9), ("fraud score", 5)],
    "inventory": [("db query", 5), ("cache miss", 5)],
}
SEVERITY_TEXT = {5: "DEBUG", 9: "INFO", 13: "WARN", 17: "ERROR"}

# Root durations (whole µs) on the edges of the 200 ms rule (exclusive, truncated ms):
# 199.999, 200.0, 200.4 and 200.999 are not slow; 201.0 is.
EDGE_US = [199_999, 200_000, 200_400, 200_999, 201_000, 12_000, 1_500_000, 800, 250_500, 199_000]

POLICY = """\
# The trace sampler's policy for this golden set (a collector tail_sampling block):
# errors, requests slower than 200 ms, and a 10 % probabilistic baseline.
policies:
  - name: errors
    type: status_code
    status_code: {status_codes: [ERROR]}
  - name: slow
    type: latency
    latency: {threshold_ms: 200}
  - name: baseline
    type: probabilistic
    probabilistic: {sampling_percentage: 10}
"""
SALT = b"default-hash-seed"
PCT = 10.0
SLOW_MS = 200


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def threshold(pct):
    """floor((2^64-1) * r), r the float64 pct/100, the product rounded to a 64-bit
    mantissa (Go big.Float, half to even) and truncated: the collector's value
    (crates/lockstep-policy/src/sampling.rs `threshold`)."""
    r = Fraction(pct / 100.0)  # exact value of the float64
    p = Fraction(2**64 - 1) * r
    num, den = p.numerator, p.denominator  # den is a power of two
    e = -(den.bit_length() - 1)
    q = num
    width = q.bit_length()
    if width > 64:
        shift = width - 64
        dropped, half = q & ((1 << shift) - 1), 1 << (shift - 1)
        q >>= shift
        if dropped > half or (dropped == half and q & 1):
            q += 1
        e += shift
    v = q << e if e >= 0 else q >> -e
    return min(v, 2**64 - 1)


THRESHOLD = threshold(PCT)
# Self-checks against the vectors of shared/facts/tail-sampling.md (and sampling.rs tests).
assert THRESHOLD == 0x19999999999999FF
assert fnv1a64(SALT + bytes.fromhex("0af7651916cd43dd8448eb211c80319c")) == 0x33BF83D45F51634C
assert fnv1a64(SALT + bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")) == 0xA54533BA2E4970B5
assert fnv1a64(SALT + bytes.fromhex("ffffffffffffffffffffffffffffffff")) == 0x17BEC3739634FE2D
# The exact-decimal floor((2^64-1)/10) is lower; no generated id may fall in between.
EXACT_DECIMAL = (2**64 - 1) // 10


def baseline_keeps(trace):
    h = fnv1a64(SALT + bytes.fromhex(trace))
    assert not (EXACT_DECIMAL < h <= THRESHOLD), trace
    return h <= THRESHOLD


def decide(spans):
    """The trace's decision from its spans alone: the names of the policies that keep it."""
    dur_ms = (max(s["end_ns"] for s in spans) - min(s["start_ns"] for s in spans)) // 10**6
    why = []
    if any(s["status"] == "ERROR" for s in spans):
        why.append("errors")
    if dur_ms > SLOW_MS:
        why.append("slow")
    if baseline_keeps(spans[0]["trace_id"]):
        why.append("baseline")
    return why


def main(out, write_set):
    """`write_set(out, spans, logs, lines, logs_name)`: the four-schema generator's writer."""
    rng = random.Random(20261206)
    out = out or os.path.join(os.path.dirname(__file__), "..", "golden", "otlp")
    os.makedirs(out, exist_ok=True)

    def hexid(n):
        return "".join(rng.choice("0123456789abcdef") for _ in range(n))

    def trace_id(want_baseline):
        # want_baseline None: any id; True/False: an id the 10 % baseline keeps / drops.
        while True:
            t = hexid(32)
            if want_baseline is None or baseline_keeps(t) == want_baseline:
                return t

    names = list(SERVICES)
    spans = []
    # (time_ns, seq, event, truth): sorted by time at the end.
    pending = []

    def emit(ts, svc, sev, body, trace=None, span=None, attrs=None, summary=False, empty_ids=False):
        path = SERVICES[svc][1]
        otlp = {}
        if path == "pb":
            otlp["timestamp"] = ts
        otlp["observed_timestamp"] = ts + rng.randint(50_000, 3_000_000)
        otlp["severity_number"] = sev
        otlp["severity_text"] = SEVERITY_TEXT[sev]
        otlp["attributes"] = dict(attrs or {})
        if trace is not None:
            otlp["trace_id"] = {"$bin": trace}
            otlp["span_id"] = {"$bin": span}
        elif empty_ids:
            otlp["trace_id"] = {"$bin": ""}
            otlp["span_id"] = {"$bin": ""}
        if path == "pb":
            otlp["trace_flags"] = 1 if trace is not None else 0
        # The resource and scope, as the group-start record's body (each service's SDK
        # sends its own): an output maps service.name etc. from here, as Loki does.
        group = {"resource": {"attributes": {"service.name": svc, "service.namespace": "shop",
                                             "deployment.environment": "edge"}},
                 "scope": {"name": f"{svc}.logs", "version": "1.4.2"}}
        event = {"time_ns": ts, "metadata": {"otlp": otlp}, "body": body, "group": group}
        truth = {"trace_id": trace, "summary": summary, "service": svc}
        pending.append((ts, len(pending), event, truth))

    # Startup lines before any trace; two carry zero-length ids (not what the input
    # itself emits, it drops "" ids, but a zero-length bin must read as no id).
    t = BASE
    for k, svc in enumerate(names):
        t += rng.randint(1, 9) * 10**6 + rng.randint(0, 999_999)
        body = {"log": f"{svc} starting"} if k == 0 else {"msg": "starting", "version": "1.4.2"}
        emit(t, svc, 9, body, empty_ids=(k == 3))
    # Untraced lines in the middle of the traffic: (before request i, service, body, empty ids)
    MIDDLE = {25: ("checkout", {"msg": "config reloaded"}, False),
              50: ("payments", {"msg": "connection pool resized", "size": 32}, True),
              70: ("inventory", {"msg": "health check ok", "status": "ok"}, False),
              90: ("frontend", {"msg": "cache warmed", "entries": 5120}, False)}

    # 0..40: root durations on the 200 ms edge, decisive (baseline drops the id, no error);
    # 40..46: fast, no error, ids the baseline keeps; 46..100: random traffic.
    N = 100
    string_body_summary = 44
    for i in range(N):
        if i in MIDDLE:
            svc, body, empty = MIDDLE[i]
            emit(t + rng.randint(1, 4) * 10**6, svc, 9, body, empty_ids=empty)
        edge, base_only = i < 40, 40 <= i < 46
        trace = trace_id(False if edge else True if base_only else None)
        root_svc = names[i % 4]
        if edge:
            root_us = EDGE_US[i // 4]
        elif base_only:
            root_us = rng.randint(5_000, 150_000)
        else:
            root_us = rng.choice([rng.randint(1_000, 150_000), rng.randint(150_000, 260_000),
                                  rng.randint(300_000, 700_000)])
        t += rng.randint(100, 300) * 10**6 + rng.randint(0, 999_999)
        start, root_ns = t, root_us * 1000
        end = start + root_ns
        random_traffic = not (edge or base_only)
        root_status = "ERROR" if random_traffic and rng.random() < 0.1 else rng.choice(["UNSET", "OK"])
        root_span = hexid(16)
        route = rng.choice(ROUTES[root_svc])
        tspans = [{"trace_id": trace, "span_id": root_span, "parent_span_id": "", "service": root_svc,
                   "name": f"GET {route}", "start_ns": start, "end_ns": end, "status": root_status}]
        on_trace = [(root_svc, root_span)]
        emit(start, root_svc, 9, {"log": "request started"} if i == 30 else {"msg": "request started", "method": "GET"},
             trace, root_span, {"http.route": route})
        for c in range(rng.randint(0, 2)):
            csvc = names[(i + c + 1) % 4]
            c_ns = rng.randint(root_ns // 10, root_ns * 2 // 3)
            cs = start + rng.randint(1, root_ns - c_ns - 1)
            cspan = hexid(16)
            status = "ERROR" if random_traffic and rng.random() < 0.1 else rng.choice(["OK", "UNSET"])
            tspans.append({"trace_id": trace, "span_id": cspan, "parent_span_id": root_span,
                           "service": csvc, "name": "call", "start_ns": cs, "end_ns": cs + c_ns,
                           "status": status})
            on_trace.append((csvc, cspan))
            msg, sev = rng.choice(DETAIL[csvc])
            emit(cs, csvc, sev, {"msg": msg}, trace, cspan, {"http.route": rng.choice(ROUTES[csvc])})
        spans.extend(tspans)
        error = any(s["status"] == "ERROR" for s in tspans)
        where = SERVICES[root_svc][0]
        ms = round(root_us / 1000, 3)
        attrs = {"http.route": route, "http.response.status_code": 500 if error else 200}
        if where == "attrs":
            attrs["duration_ms"] = ms
            body = {"log": "request finished"} if i == string_body_summary else {"msg": "request finished"}
        else:
            body = {"msg": "request finished", "latency_ms": ms}
        emit(end, root_svc, 17 if error else 9, body, trace, root_span, attrs, summary=True)
        if len(on_trace) < 3 and rng.random() < 0.4:
            # a line after the deciding one (kept by the filter's kept-trace memory)
            svc, span = rng.choice(on_trace)
            emit(end + rng.randint(1, 30) * 10**6 + rng.randint(0, 999_999), svc, 5,
                 {"msg": "response flushed" if svc == root_svc else "cache updated"}, trace, span)

    assert string_body_summary % 4 in (0, 2)  # an "attrs" root service
    pending.sort(key=lambda p: (p[0], p[1]))
    times = [p[0] for p in pending]
    assert all(a < b for a, b in zip(times, times[1:])), "timestamps must increase strictly"
    events, lines = [], []
    for ts, _, event, truth in pending:
        lines.append({"line": len(events) + 1, **truth})
        events.append(event)

    write_set(out, spans, events, lines, "events.jsonl")
    with open(os.path.join(out, "lockstep-policy.yaml"), "w") as f:
        f.write(POLICY)

    # Summary: the traces as the policy decides them, and their lines.
    by_trace = {}
    for s in spans:
        by_trace.setdefault(s["trace_id"], []).append(s)
    decided = {tid: decide(ss) for tid, ss in by_trace.items()}
    kept = [tid for tid, why in decided.items() if why]
    per_rule = {r: sum(1 for why in decided.values() if r in why) for r in ("errors", "slow", "baseline")}
    kept_lines = sum(1 for l in lines if l["trace_id"] is not None and decided[l["trace_id"]])
    dropped_lines = sum(1 for l in lines if l["trace_id"] is not None and not decided[l["trace_id"]])
    untraced = sum(1 for l in lines if l["trace_id"] is None)
    summaries = {l["trace_id"] for l in lines if l["summary"]}
    assert summaries == set(by_trace), "one summary line per trace"
    print(f"traces: {len(by_trace)}, kept {len(kept)} (errors {per_rule['errors']}, slow {per_rule['slow']}, "
          f"baseline {per_rule['baseline']}; overlapping), dropped {len(by_trace) - len(kept)}")
    print(f"lines: {len(lines)}: of kept traces {kept_lines}, of dropped traces {dropped_lines}, untraced {untraced}")
