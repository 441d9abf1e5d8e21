#!/usr/bin/env python3
"""Regenerates golden/fluent-bit (deterministic); run as `scripts/gen-golden.py --fluent-bit [DIR]`
(which hands it the four-schema generator's detail lines and writer).

Traces decided by Fluent Bit 5.1.1's `sampling` processor (fluent-bit.yaml beside the
data): a probabilistic processor (50 %) chained before a tail processor whose conditions
are status_code [ERROR], latency threshold_ms_high 200 and latency threshold_ms_low 10.
Fluent Bit judges each span on its own (both latency bounds inclusive, ms truncated), so
each service writes one summary line per span: its own duration and a level that follows
its own status. Durations are whole microseconds, so every schema's text (ms with three
decimals, seconds with six, a Go `µs` string) carries the span's exact duration. The
traces on the edges of both bounds have ids the probabilistic processor keeps and nothing
else that matches, so each edge alone decides its trace.

Files as in golden/four-schemas (spans.jsonl, logs.jsonl, lines.jsonl); `summary` marks
every span's summary line. lockstep-policy.yaml is `lockstep policy import
fluent-bit.yaml`, checked by the tests.
"""
import json, random, os

SERVICES = {"api": "canonical", "billing": "seconds", "web": "pino", "ledger": "otel"}
BASE = 1_796_000_000 * 10**9
# Root durations on the edges of threshold_ms_high 200 (inclusive); child durations on
# the edges of threshold_ms_low 10 (inclusive); both in whole µs.
ROOT_EDGE_US = [199_999, 200_000, 200_400, 200_999, 201_000, 150_000, 5_000_000, 199_000, 250_500, 12_000]
CHILD_EDGE_US = [10_000, 10_999, 11_000, 9_500, 11_001, 25_000, 3_200, 40_000]


def main(out, detail_line, write_set):
    """`detail_line(service, trace, span, ts_ns)`: the four-schema generator's detail lines;
    `write_set(out, spans, logs, lines)`: its writer."""
    rng = random.Random(20261129)
    out = out or os.path.join(os.path.dirname(__file__), "..", "golden", "fluent-bit")
    os.makedirs(out, exist_ok=True)

    def hexid(n):
        return "".join(rng.choice("0123456789abcdef") for _ in range(n))

    spans, logs, lines = [], [], []

    def log(rec, trace, summary, service):
        lines.append({"line": len(logs) + 1, "trace_id": trace, "summary": summary, "service": service})
        logs.append(rec)

    def summary_line(service, trace, span, dur_us, error, ts_ns, root):
        schema = SERVICES[service]
        ms = dur_us / 1000
        if schema == "canonical":
            return {"ts": ts_ns // 10**6, "level": "error" if error else "info", "service": service,
                    "trace_id": trace, "span_id": span, "msg": "request finished" if root else "call finished",
                    "duration_ms": round(ms, 3)}
        if schema == "seconds":
            return {"time": ts_ns / 1e9, "level": "ERR" if error else "INF", "svc": service,
                    "trace_id": trace.upper(), "span_id": span,
                    "message": "charge complete" if root else "rate lookup complete",
                    "duration": round(dur_us / 1e6, 6)}
        if schema == "pino":
            return {"level": 50 if error else 30, "time": ts_ns // 10**6, "pid": 7, "hostname": "edge-1",
                    "traceId": trace, "spanId": span, "res": {"statusCode": 502 if error else 200},
                    "responseTime": round(ms, 3), "msg": "request completed" if root else "fragment rendered"}
        return {"timestamp": str(ts_ns), "severity_number": 17 if error else 9,
                "severity_text": "ERROR" if error else "INFO", "trace_id": trace, "span_id": span,
                "body": "ledger write" if root else "ledger read", "latency": f"{dur_us}.000µs",
                "resource": {"service.name": service}}

    for svc in SERVICES:
        log({"level": "info", "service": svc, "msg": "starting"} if SERVICES[svc] != "pino" else {"level": 30, "msg": "server listening"}, None, False, svc)

    def passes_probabilistic(trace, pct=50):
        # Fluent Bit's rule: the id's first 8 bytes big-endian, mod 10^6, / 10^4 < pct
        return (int(trace[:16], 16) % 1_000_000) / 10_000.0 < pct

    def decisive_id():
        # An id the probabilistic processor keeps, so the tail condition under test decides.
        while True:
            t = hexid(32)
            if passes_probabilistic(t):
                return t

    t = BASE
    names = list(SERVICES)
    # 0..40: root durations on the 200 ms edge, nothing else matching (decisive ids, no
    # errors, children above 10 ms); 40..56: one child on the 10 ms edge under a 150 ms
    # root, nothing else matching; 56..96: random traces (random ids, some errors).
    for i in range(96):
        edge = i < 56
        trace = decisive_id() if edge else hexid(32)
        root_svc = names[i % 4]
        if i < 40:
            root_us = ROOT_EDGE_US[i // 4]
        elif i < 56:
            root_us = 150_000
        else:
            root_us = rng.choice([rng.randint(20_000, 150_000), rng.randint(150_000, 260_000), rng.randint(300_000, 3_000_000)])
        t += rng.randint(1, 50) * 10**6
        start, end = t, t + root_us * 1000
        root_span = hexid(16)
        root_status = "ERROR" if (not edge and rng.random() < 0.15) else "UNSET"
        spans.append({"trace_id": trace, "span_id": root_span, "parent_span_id": "", "service": root_svc,
                      "name": "request", "start_ns": start, "end_ns": end, "status": root_status})
        log(detail_line(root_svc, trace, root_span, start), trace, False, root_svc)
        n_children = 1 if 40 <= i < 56 else rng.randint(0, 2)
        for c in range(n_children):
            csvc = names[(i + c + 1) % 4]
            if 40 <= i < 56:
                c_us = CHILD_EDGE_US[(i - 40) % len(CHILD_EDGE_US)]
            else:
                c_us = rng.randint(12_000, max(13_000, root_us // 2))
            c_us = min(c_us, root_us)
            cs = start + rng.randint(0, max(1, (root_us - c_us) * 1000))
            ce = cs + c_us * 1000
            cspan = hexid(16)
            status = "ERROR" if (not edge and rng.random() < 0.1) else "OK"
            spans.append({"trace_id": trace, "span_id": cspan, "parent_span_id": root_span, "service": csvc,
                          "name": "call", "start_ns": cs, "end_ns": ce, "status": status})
            log(detail_line(csvc, trace, cspan, cs), trace, False, csvc)
            log(summary_line(csvc, trace, cspan, c_us, status == "ERROR", ce, False), trace, True, csvc)
        log(summary_line(root_svc, trace, root_span, root_us, root_status == "ERROR", end, True), trace, True, root_svc)
        if rng.random() < 0.5:
            log(detail_line(root_svc, trace, root_span, end + 1000), trace, False, root_svc)

    write_set(out, spans, logs, lines)


