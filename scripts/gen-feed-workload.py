#!/usr/bin/env python3
"""Workload, sink and checks of scripts/drill-feed.sh (issue 22). Manual only.

  gen    an application: for each request, spans through the OpenTelemetry Python SDK
         (BatchSpanProcessor + OTLPSpanExporter, protobuf over HTTP) to Fluent Bit's
         `opentelemetry` input, and its log lines (JSON: trace_id, span_id, level, msg,
         seq, ...) appended to the file Fluent Bit tails, with the same trace ids.
         Per request: a root span and a child span; ~5 % have an ERROR status (on the root
         or on the child), ~10 % one span of 200 ms or more (a few exactly 200.000 ms,
         a few 199.999 ms: Fluent Bit's latency rule truncates to whole ms, inclusive),
         the rest fast and OK. Span times are set explicitly (start = now - duration), so
         nothing sleeps for the durations. The truth file gets one JSON line per request:
         trace id, whether Fluent Bit's rules keep it (any span with status ERROR or
         int((end - start) / 1e6) >= 200: Fluent Bit 5.1.1's
         plugins/processor_sampling conditions), its seqs, the phase.
         --no-spans writes the log lines only (a silent trace pipeline); --ids-only sends
         one root span per request and no log line (ids reported ahead of any line);
         --all-error gives every root span an ERROR status.
  sink   a minimal OTLP/HTTP trace receiver (protobuf): appends "unix_ns trace_id" per
         span to a file and answers 200 with an empty ExportTraceServiceResponse. A second
         `opentelemetry` output of the kept traces points here: what Fluent Bit kept,
         independently of the feed.
  check  reads back a run's stream from Loki (query_range by `seq`) and compares it with
         the truth file: prints one JSON object with the counts.
"""
import argparse
import json
import os
import random
import re
import sys
import time
import urllib.parse
import urllib.request


def gen(a):
    rnd = random.Random(a.seed)
    tracer = provider = None
    if not a.no_spans:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.trace import Status, StatusCode

        provider = TracerProvider(resource=Resource.create({"service.name": "drill-feed"}))
        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=a.endpoint, timeout=10),
            max_queue_size=500000, schedule_delay_millis=200, max_export_batch_size=512))
        tracer = provider.get_tracer("drill-feed")
    log = None if a.ids_only else open(a.log, "a", buffering=1 << 16)
    truth = open(a.truth, "a") if a.truth else None
    seq = a.seq_start
    t0 = time.monotonic()
    apps = ["checkout", "payments", "search"]
    for i in range(a.requests):
        due = t0 + i / a.rate
        d = due - time.monotonic()
        if d > 0:
            if log:
                log.flush()
            time.sleep(d)
        app = rnd.choice(apps)
        # statuses and durations (ms) of the root and the child
        r = rnd.random()
        err_root = err_child = False
        root_ms, child_ms = rnd.uniform(2, 150), None
        if a.all_error:
            err_root = True
        elif r < 0.03:
            err_root = True
        elif r < 0.05:
            err_child = True
        elif r < 0.13:
            root_ms = rnd.uniform(200.5, 2500)
        elif r < 0.14:
            root_ms = 200.0      # inclusive: kept
        elif r < 0.15:
            root_ms = 199.999    # truncated to 199: not kept
        child_ms = rnd.uniform(0.5, root_ms * 0.9)
        if rnd.random() < 0.01 and not (err_root or err_child) and root_ms < 199:
            # only the child is slow: Fluent Bit's latency is per span (here the root
            # reports the same, as a parent encloses its child; kept for the record)
            child_ms = 210.0
            root_ms = 215.0
        now = time.time_ns()
        root_ns, child_ns = int(round(root_ms * 1e6)), int(round(child_ms * 1e6))
        trace_hex = root_span_hex = child_span_hex = None
        if tracer is not None:
            root = tracer.start_span("GET /api/" + app, start_time=now - root_ns)
            ctx = trace.set_span_in_context(root)
            child = None if a.ids_only else tracer.start_span("db query", context=ctx, start_time=now - root_ns + 100_000)
            if err_child and child is not None:
                child.set_status(Status(StatusCode.ERROR, "db timeout"))
            if err_root:
                root.set_status(Status(StatusCode.ERROR, "upstream 503"))
            elif not err_child:
                root.set_status(Status(StatusCode.OK))
            sc = root.get_span_context()
            trace_hex, root_span_hex = "%032x" % sc.trace_id, "%016x" % sc.span_id
            child_span_hex = "%016x" % child.get_span_context().span_id if child is not None else None
        else:
            trace_hex = "%032x" % rnd.getrandbits(128)
            root_span_hex, child_span_hex = "%016x" % rnd.getrandbits(64), "%016x" % rnd.getrandbits(64)
        seqs = []
        if log:
            lines = [{"level": "info", "app": app, "msg": "request started", "path": "/api/" + app}]
            lines.append({"level": "error" if err_child else "debug", "app": app,
                          "msg": "db query failed" if err_child else "db query",
                          "span_id": child_span_hex, "duration_ms": round(child_ms, 3)})
            lines.append({"level": "error" if err_root else "info", "app": app,
                          "msg": "request failed" if err_root else "request finished",
                          "status": 503 if err_root else 200, "duration_ms": round(root_ms, 3)})
            for ln in lines:
                ln.setdefault("span_id", root_span_hex)
                ln["trace_id"] = trace_hex
                ln["seq"] = seq
                ln["phase"] = a.phase
                seqs.append(seq)
                seq += 1
                log.write(json.dumps(ln, separators=(",", ":")) + "\n")
        if tracer is not None:
            if child is not None:
                child.end(end_time=now - root_ns + 100_000 + child_ns)
            root.end(end_time=now)
        # Fluent Bit 5.1.1's rules: any span with status ERROR, or any span whose duration
        # truncated to whole ms is >= 200 (inclusive). Per span.
        kept = err_root or err_child or int(root_ns // 1_000_000) >= 200 or int(child_ns // 1_000_000) >= 200
        if truth:
            truth.write(json.dumps({"trace_id": trace_hex, "kept": kept, "seqs": seqs,
                                    "phase": a.phase, "spans": tracer is not None,
                                    "t": round(time.time(), 3)}) + "\n")
    if log:
        log.close()
    if truth:
        truth.close()
    if provider is not None:
        provider.force_flush(60_000)
        provider.shutdown()
    print(seq)


def sink(a):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    out = open(a.out, "a", buffering=1)

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            req = ExportTraceServiceRequest()
            req.ParseFromString(body)
            now = time.time_ns()
            ids = {s.trace_id.hex() for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans}
            out.write("".join("%d %s\n" % (now, t) for t in sorted(ids)))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", a.port), H).serve_forever()


def loki_lines(base, run):
    """Every line of {job="drill-feed", run=RUN}, query_range page by page (forward)."""
    sel = '{job="drill-feed", run="%s"}' % run
    seq_re = re.compile(r'"seq":\s*(\d+)')

    def get(**q):
        with urllib.request.urlopen(base + "/loki/api/v1/query_range?" + urllib.parse.urlencode(q), timeout=120) as r:
            return json.load(r)["data"]["result"]
    now = time.time_ns()
    start, end, at_start = now - 6 * 3600 * 10**9, now + 10**9, 0
    seqs = []
    while True:
        vals = sorted(((int(v[0]), v[1]) for s in get(query=sel, start=str(start), end=str(end),
                       limit="5000", direction="forward") for v in s["values"]), key=lambda v: v[0])
        if not vals:
            break
        skip = at_start
        for ts, line in vals:
            if ts == start and skip:
                skip -= 1
                continue
            m = seq_re.search(line)
            seqs.append(int(m.group(1)) if m else -1)
        last = vals[-1][0]
        at_start = sum(1 for v in vals if v[0] == last) + (at_start if last == start else 0)
        if len(vals) < 5000:
            break
        start = last
    return seqs


def check(a):
    truth = [json.loads(l) for l in open(a.truth)]
    seqs = loki_lines(a.loki.rstrip("/"), a.run)
    got = set(seqs)
    sink_ids = set()
    if a.sink and os.path.exists(a.sink):
        sink_ids = {l.split()[1] for l in open(a.sink) if l.strip()}
    must = set()
    if a.must_keep and os.path.exists(a.must_keep):
        must = {l.strip() for l in open(a.must_keep) if l.strip()}
    res = {"run": a.run, "entries": len(seqs), "distinct": len(got), "duplicates": len(seqs) - len(got)}
    by_phase = {}
    missing_kept = []
    for t in truth:
        p = by_phase.setdefault(t["phase"], {
            "traces": 0, "kept_traces": 0, "kept_lines": 0, "kept_lines_stored": 0,
            "dropped_lines": 0, "dropped_lines_stored": 0, "rule_vs_sink_diff": 0,
            "must_keep_traces": 0, "must_keep_lines": 0, "must_keep_lines_stored": 0,
            "lines": 0, "lines_stored": 0})
        p["traces"] += 1
        n = len(t["seqs"])
        s = sum(1 for q in t["seqs"] if q in got)
        p["lines"] += n
        p["lines_stored"] += s
        if t["kept"]:
            p["kept_traces"] += 1
            p["kept_lines"] += n
            p["kept_lines_stored"] += s
            if s < n:
                missing_kept.append((t["phase"], t["trace_id"], n - s))
        else:
            p["dropped_lines"] += n
            p["dropped_lines_stored"] += s
        if a.sink and t["spans"] and (t["trace_id"] in sink_ids) != t["kept"]:
            p["rule_vs_sink_diff"] += 1
        if t["trace_id"] in must:
            p["must_keep_traces"] += 1
            p["must_keep_lines"] += n
            p["must_keep_lines_stored"] += s
    # every trace with a line missing that should be there (kept by the rules, or in
    # --must-keep), with the time its lines were written: missing.tsv beside the truth file
    with open(os.path.join(os.path.dirname(os.path.abspath(a.truth)), "missing.tsv"), "w") as f:
        f.write("phase\ttrace_id\tkept_by_rules\tmust_keep\tlines\tstored\twritten_unix_s\n")
        for t in truth:
            s = sum(1 for q in t["seqs"] if q in got)
            if s < len(t["seqs"]) and (t["kept"] or t["trace_id"] in must or a.all_lines == t["phase"]):
                f.write("%s\t%s\t%s\t%s\t%d\t%d\t%.3f\n" % (t["phase"], t["trace_id"], t["kept"],
                        t["trace_id"] in must, len(t["seqs"]), s, t["t"]))
    if a.all_lines:
        ts = [(t["t"], all(q in got for q in t["seqs"])) for t in truth if t["phase"] == a.all_lines]
        miss = [x for x, ok in ts if not ok]
        res["all_lines_phase"] = {"first_written": ts[0][0] if ts else None, "last_written": ts[-1][0] if ts else None,
                                  "missing_traces": len(miss), "missing_first_written": min(miss) if miss else None,
                                  "missing_last_written": max(miss) if miss else None}
    res["phases"] = by_phase
    res["sink_trace_ids"] = len(sink_ids)
    res["missing_kept_sample"] = missing_kept[:10]
    print(json.dumps(res))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = ap.add_subparsers(dest="cmd", required=True)
    g = sp.add_parser("gen")
    g.add_argument("--endpoint", default="http://127.0.0.1:4318/v1/traces")
    g.add_argument("--log", required=True)
    g.add_argument("--truth")
    g.add_argument("--requests", type=int, default=3000)
    g.add_argument("--rate", type=float, default=150.0)
    g.add_argument("--seed", type=int, default=22)
    g.add_argument("--seq-start", type=int, default=0)
    g.add_argument("--phase", default="p")
    g.add_argument("--no-spans", action="store_true")
    g.add_argument("--ids-only", action="store_true")
    g.add_argument("--all-error", action="store_true")
    s = sp.add_parser("sink")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--out", required=True)
    c = sp.add_parser("check")
    c.add_argument("--loki", required=True)
    c.add_argument("--run", required=True)
    c.add_argument("--truth", required=True)
    c.add_argument("--sink")
    c.add_argument("--must-keep")
    c.add_argument("--all-lines", help="a phase whose every line must be stored (listed in missing.tsv)")
    a = ap.parse_args()
    {"gen": gen, "sink": sink, "check": check}[a.cmd](a)


if __name__ == "__main__":
    main()
