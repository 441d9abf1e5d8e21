#!/usr/bin/env python3
"""Regenerates golden/four-schemas (deterministic). See golden/README.md.

Writes spans.jsonl (the traces, the ground truth the trace sampler sees), logs.jsonl
(what the services wrote, in four schemas with drift), and lines.jsonl (for each log
line: the trace it belongs to and whether it is the request's summary line).

`scripts/gen-golden.py --fluent-bit [DIR]` regenerates golden/fluent-bit instead: the
same four schemas, but every service logs one summary line per span (its own duration
and status), as Fluent Bit's `sampling` processor judges each span on its own.
"""
import json, random, sys, os


rng = random.Random(20261122)
out = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "--fluent-bit" else os.path.join(os.path.dirname(__file__), "..", "golden", "four-schemas")
os.makedirs(out, exist_ok=True)

SERVICES = {
    # service: schema
    "api": "canonical",      # duration_ms, level words, trace_id/span_id
    "billing": "seconds",    # duration in float seconds, ERR/INF levels
    "web": "pino",           # numeric levels, traceId/spanId, responseTime
    "ledger": "otel",        # severity_number/severity_text, Go duration strings
}
BASE = 1_795_000_000 * 10**9

def hexid(n):
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))

# Durations chosen to hit the edges of the 200 ms rule (exclusive, truncated ms).
EDGE_MS = [199.999, 200.0, 200.4, 200.999, 201.0, 12.0, 5000.0, 0.8, 250.5, 199.0]

spans, logs, lines = [], [], []
t = BASE

def log(rec, trace, summary, service):
    lines.append({"line": len(logs) + 1, "trace_id": trace, "summary": summary, "service": service})
    logs.append(rec)

def summary_line(service, trace, span, dur_ns, error, ts_ns):
    schema = SERVICES[service]
    ms = dur_ns / 1e6
    if schema == "canonical":
        return {"ts": ts_ns // 10**6, "level": "error" if error else "info", "service": service,
                "trace_id": trace, "span_id": span, "msg": "request finished", "duration_ms": round(ms, 3),
                "http": {"method": rng.choice(["GET", "POST"]), "status": 500 if error else 200}}
    if schema == "seconds":
        return {"time": ts_ns / 1e9, "level": "ERR" if error else "INF", "svc": service,
                "trace_id": trace.upper(), "span_id": span, "message": "charge complete",
                "duration": round(dur_ns / 1e9, 6)}
    if schema == "pino":
        return {"level": 50 if error else 30, "time": ts_ns // 10**6, "pid": 7, "hostname": "edge-1",
                "traceId": trace, "spanId": span, "req": {"method": "GET", "url": "/cart"},
                "res": {"statusCode": 502 if error else 200}, "responseTime": round(ms, 3), "msg": "request completed"}
    # otel
    us = dur_ns / 1e3
    return {"timestamp": str(ts_ns), "severity_number": 17 if error else 9, "severity_text": "ERROR" if error else "INFO",
            "trace_id": trace, "span_id": span, "body": "ledger write", "latency": f"{us:.3f}µs",
            "resource": {"service.name": service}}

def detail_line(service, trace, span, ts_ns):
    schema = SERVICES[service]
    if schema == "canonical":
        return {"ts": ts_ns // 10**6, "level": "debug", "service": service, "trace_id": trace, "span_id": span, "msg": "cache lookup"}
    if schema == "seconds":
        return {"time": ts_ns / 1e9, "level": "DBG", "svc": service, "trace_id": trace, "span_id": span, "message": "rate table loaded"}
    if schema == "pino":
        return {"level": 20, "time": ts_ns // 10**6, "traceId": trace, "spanId": span, "msg": "render"}
    return {"timestamp": str(ts_ns), "severity_number": 5, "severity_text": "DEBUG", "trace_id": trace, "span_id": span, "body": "ledger read"}

def write_set(out, spans, logs, lines):
    """Writes a golden set's three files into `out`."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "spans.jsonl"), "w") as f:
        for s in spans:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    with open(os.path.join(out, "logs.jsonl"), "w") as f:
        for r in logs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(os.path.join(out, "lines.jsonl"), "w") as f:
        for r in lines:
            f.write(json.dumps(r) + "\n")
    print(f"{len(spans)} spans, {len(logs)} log lines -> {out}")

if len(sys.argv) > 1 and sys.argv[1] == "--fluent-bit":
    # The Fluent Bit set: its own generator, the same detail lines.
    import importlib.util
    spec = importlib.util.spec_from_file_location("gen_golden_fluent_bit",
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen-golden-fluent-bit.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(sys.argv[2] if len(sys.argv) > 2 else None, detail_line, write_set)
    sys.exit(0)

# A few lines before any trace: startup messages with no trace context.
for svc in SERVICES:
    log({"level": "info", "service": svc, "msg": "starting"} if SERVICES[svc] != "pino" else {"level": 30, "msg": "server listening"}, None, False, svc)

N = 80
for i in range(N):
    trace = hexid(32)
    root_svc = list(SERVICES)[i % 4]
    if i < len(EDGE_MS) * 4:
        dur_ms = EDGE_MS[i // 4]
    else:
        dur_ms = rng.choice([rng.uniform(1, 150), rng.uniform(150, 260), rng.uniform(300, 3000)])
    dur_ns = int(dur_ms * 1e6)
    t += rng.randint(1, 50) * 10**6
    start, end = t, t + dur_ns
    error_at = None
    if rng.random() < 0.2:
        error_at = rng.choice(["root", "child"])
    root_span = hexid(16)
    spans.append({"trace_id": trace, "span_id": root_span, "parent_span_id": "", "service": root_svc,
                  "name": "request", "start_ns": start, "end_ns": end, "status": "ERROR" if error_at == "root" else "UNSET"})
    children = rng.randint(0, 3)
    for c in range(children):
        csvc = list(SERVICES)[(i + c + 1) % 4]
        cs = start + rng.randint(0, max(1, dur_ns // 3))
        ce = min(end, cs + rng.randint(1, max(2, dur_ns // 2)))
        cspan = hexid(16)
        spans.append({"trace_id": trace, "span_id": cspan, "parent_span_id": root_span, "service": csvc,
                      "name": "call", "start_ns": cs, "end_ns": ce,
                      "status": "ERROR" if (error_at == "child" and c == 0) else "OK"})
        log(detail_line(csvc, trace, cspan, cs), trace, False, csvc)
    if error_at == "child" and children == 0:
        spans[-1]["status"] = "ERROR"  # no child: the root carries it
    trace_error = any(s["status"] == "ERROR" for s in spans if s["trace_id"] == trace)
    log(detail_line(root_svc, trace, root_span, start), trace, False, root_svc)
    log(summary_line(root_svc, trace, root_span, dur_ns, trace_error, end), trace, True, root_svc)
    if rng.random() < 0.5:
        # a line after the deciding one (kept by the filter's kept-trace memory)
        log(detail_line(root_svc, trace, root_span, end + 1000), trace, False, root_svc)

write_set(out, spans, logs, lines)
