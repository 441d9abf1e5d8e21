"""Helpers shared by the manual real-Fluent-Bit checks (scripts/*check*.py): where the
built artifacts are, a free loopback port, spans as an OTLP/JSON request, and what
`lockstep replay` keeps. Builds and fetches nothing."""
import os, re, shutil, socket, subprocess, sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def fluent_bit():
    return os.environ.get("FLUENT_BIT") or sys.exit("set FLUENT_BIT=/path/to/fluent-bit")


def artifacts():
    """(wasm, so, receiver, lockstep) paths, each checked to exist. `LOCKSTEP_WASM`,
    `LOCKSTEP_LOKI_SO`, `LOKI_RECEIVER` and `LOCKSTEP` point at other copies (e.g. a
    copy of the plugin taken before dist/ is rebuilt)."""
    wasm = os.environ.get("LOCKSTEP_WASM") or os.path.join(ROOT, "dist", "lockstep_filter.wasm")
    so = os.environ.get("LOCKSTEP_LOKI_SO") or os.path.join(ROOT, "dist", "lockstep_out_loki.so")
    receiver = os.environ.get("LOKI_RECEIVER") or os.path.join(ROOT, "target", "release", "examples", "loki_receiver")
    for path, hint in [(wasm, "scripts/build-plugins.sh"), (so, "scripts/build-plugins.sh"),
                       (receiver, "cargo build --release -p lockstep-hosts --example loki_receiver")]:
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: {hint}")
    lockstep = next((p for p in [os.environ.get("LOCKSTEP", ""), os.path.join(ROOT, "target", "release", "lockstep"),
                                 os.path.join(ROOT, "target", "debug", "lockstep")] if p and os.path.exists(p)), None)
    if not lockstep:
        sys.exit("no lockstep binary: cargo build --release -p lockstep-cli")
    return wasm, so, receiver, lockstep


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def otlp_traces(spans):
    """spans.jsonl rows as one OTLP/JSON ExportTraceServiceRequest, a resource per service.
    Fluent Bit 5.1.1's decoder takes the status code as a string only."""
    by_service = {}
    for s in spans:
        by_service.setdefault(s["service"], []).append({
            "traceId": s["trace_id"], "spanId": s["span_id"],
            **({"parentSpanId": s["parent_span_id"]} if s["parent_span_id"] else {}),
            "name": s["name"], "kind": 2,
            "startTimeUnixNano": str(s["start_ns"]), "endTimeUnixNano": str(s["end_ns"]),
            "status": {"code": s["status"]},
        })
    return {"resourceSpans": [
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
         "scopeSpans": [{"scope": {"name": "golden"}, "spans": ss}]}
        for svc, ss in by_service.items()]}


def replay(lockstep, wasm, golden, policy, work):
    """`lockstep replay` of a golden set's data with another policy: (report text,
    records kept, traces kept by the trace-side truth)."""
    g = os.path.join(work, "golden")
    os.makedirs(g, exist_ok=True)
    for f in ("spans.jsonl", "logs.jsonl", "lines.jsonl"):
        shutil.copy(os.path.join(golden, f), g)
    shutil.copy(policy, os.path.join(g, "lockstep-policy.yaml"))
    r = subprocess.run([lockstep, "replay", g, "--wasm", wasm], capture_output=True, text=True)
    kept = re.search(r"kept: (\d+)", r.stdout)
    traces = re.search(r"traces: \d+ \((\d+) kept", r.stdout)
    if r.returncode != 0 or not kept or not traces:
        sys.exit(f"lockstep replay failed ({r.returncode}): {r.stdout}{r.stderr}")
    return r.stdout, int(kept.group(1)), int(traces.group(1))


def wait_for_port(port, proc, log_path, timeout=15):
    """Waits until Fluent Bit listens on `port`; exits with its log if it died or never did."""
    import time
    deadline = time.time() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                sys.exit("Fluent Bit did not start:\n" + open(log_path).read()[-4000:])
            time.sleep(0.1)


def post_traces(port, spans):
    """POSTs spans.jsonl rows to an opentelemetry input as one OTLP/JSON request."""
    import json, urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/traces", data=json.dumps(otlp_traces(spans)).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        print(f"POST /v1/traces: {r.status} ({len(spans)} spans)")
