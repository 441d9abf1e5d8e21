#!/usr/bin/env python3
"""Issue 27's check in real hosts: the same OTLP log records sent once to Loki's own OTLP
endpoint (/otlp/v1/logs) and once through Fluent Bit's `opentelemetry` input and
`lockstep_loki`, read back from Loki, compared line by line: the line, the stream labels
and the structured metadata. Manual only: it needs both binaries and the Python SDK.

    FLUENT_BIT=/path/to/release/fluent-bit LOKI_BIN=/path/to/loki \\
    LOKI_CONFIG=/path/to/loki.yaml [PLUGIN_SO=dist/lockstep_out_loki.so] \\
    [LOKI_PORT=3120] [OTLP_PORT=4328] scripts/diff-otlp-loki.py [--bench N]

It starts its own Loki (a copy of LOKI_CONFIG with http_listen_port LOKI_PORT and
grpc_listen_port LOKI_PORT + 5996, `-config.expand-env=true`, LOKI_DATA a fresh directory)
and its own Fluent Bit (opentelemetry input on 127.0.0.1:OTLP_PORT, lockstep_loki with no
labels: only what the OTLP mapping gives). The records are test-harness/scripts/
otlp_log_client.py's, stamped near now (Loki refuses old samples), with one resource
attribute more, `lockstep.run` (a structured-metadata value that tells the two copies
apart, left out of the comparison).

Printed: per record, "same" or each difference (label, metadata, line); then the
differences that remain, which the README lists and explains. Exit 1 when a record is
missing from either side or a difference is not one of the known ones.

--bench N [--policy FILE]: then N OTLP/HTTP requests of 500 records each (the opentelemetry-proto
package's messages, one request built once and posted N times) through Fluent Bit with
`otlp_mapping loki`, with `otlp_mapping off` (today's mapping: the body as JSON, no
metadata), and with `otlp_mapping off` plus the same volume of structured metadata as
static pairs (what shipping that much costs without any mapping work), interleaved, best
of three: Fluent Bit's CPU seconds (utime + stime from /proc) until the plugin reports
every entry sent (its metrics_listen), as ratios (ROUNDS=N for more rounds; medians are printed too). With --policy FILE, each run samples by
whole trace with that policy_file (decision_wait 1s), until every record is decided and
the queue is sent: one record in ten is an ERROR, each record its own trace.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLUENT_BIT = os.environ.get("FLUENT_BIT")
LOKI_BIN = os.environ.get("LOKI_BIN")
LOKI_CONFIG = os.environ.get("LOKI_CONFIG")
PLUGIN_SO = os.environ.get("PLUGIN_SO", os.path.join(ROOT, "dist/lockstep_out_loki.so"))
LOKI_PORT = int(os.environ.get("LOKI_PORT", "3120"))
OTLP_PORT = int(os.environ.get("OTLP_PORT", "4328"))
LOKI = f"http://127.0.0.1:{LOKI_PORT}"
CLIENT = os.path.join(ROOT, "test-harness/scripts/otlp_log_client.py")

# Differences that come from Fluent Bit, before the output sees a record (README, "OTLP
# logs"): (metadata name, why).
KNOWN = {
    "big": "Fluent Bit's protobuf path cuts integer attributes to 32 bits",
}
IGNORED = {"lockstep_run"}


def http(method, url, body=None, headers=None, timeout=10):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def wait(pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if pred():
                return
        except Exception:
            pass
        time.sleep(0.5)
    sys.exit(f"timed out waiting for {what}")


def start_loki(work):
    data = os.path.join(work, "loki-data")
    os.makedirs(data)
    cfg = os.path.join(work, "loki.yaml")
    text = open(LOKI_CONFIG).read()
    import re

    text = re.sub(r"http_listen_port:\s*\d+", f"http_listen_port: {LOKI_PORT}", text)
    if "grpc_listen_port" in text:
        text = re.sub(r"grpc_listen_port:\s*\d+", f"grpc_listen_port: {LOKI_PORT + 5996}", text)
    else:
        text = text.replace(
            f"http_listen_port: {LOKI_PORT}",
            f"http_listen_port: {LOKI_PORT}\n  grpc_listen_port: {LOKI_PORT + 5996}",
        )
    open(cfg, "w").write(text)
    env = dict(os.environ, LOKI_DATA=data)
    p = subprocess.Popen(
        [LOKI_BIN, "-config.file", cfg, "-config.expand-env=true"],
        stdout=open(os.path.join(work, "loki.log"), "w"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    wait(lambda: http("GET", LOKI + "/ready")[0] == 200, 120, "Loki ready")
    return p


# The same volume of structured metadata as the OTLP mapping gives the bench's records,
# as static pairs: what shipping that much costs with no mapping work (the floor).
STATIC_SM = (
    "http_route=/cart, http_status_code=200, duration_ms=12.5, "
    "observed_timestamp=1796620639611634412, severity_number=9, severity_text=INFO, flags=1, "
    "trace_id=5b8aa5a2d2c872e8321cf37308d69df2, span_id=051581bf3cb55c13, host_name=edge, "
    "scope_name=bench"
)


# --policy FILE: the bench runs with `policy_file FILE` and `decision_wait 1s` (sampling
# by whole trace, as fluent-bit-conf/loki-sampling ships it): only kept lines are mapped.
POLICY = sys.argv[sys.argv.index("--policy") + 1] if "--policy" in sys.argv else None


def start_fluent_bit(work, name, mapping, sampling=False):
    extra = ""
    if mapping == "off+sm":
        mapping, extra = "off", f"    structured_metadata {STATIC_SM}\n"
    if sampling and POLICY:
        extra += f"    policy_file {os.path.abspath(POLICY)}\n    decision_wait 1s\n"
    spool = os.path.join(work, f"spool-{name}")
    conf = os.path.join(work, f"fb-{name}.conf")
    open(conf, "w").write(
        f"""[SERVICE]
    flush        1
    log_level    info
[INPUT]
    name         opentelemetry
    listen       127.0.0.1
    port         {OTLP_PORT}
[OUTPUT]
    name         lockstep_loki
    match        *
    url          {LOKI}/loki/api/v1/push
    spool_dir    {spool}
    linger       50ms
    otlp_mapping {mapping}
    metrics_listen {OTLP_PORT + 1}
{extra}"""
    )
    p = subprocess.Popen(
        [FLUENT_BIT, "-e", PLUGIN_SO, "-c", conf],
        stdout=open(os.path.join(work, f"fb-{name}.log"), "w"),
        stderr=subprocess.STDOUT,
    )

    def up():
        try:
            http("POST", f"http://127.0.0.1:{OTLP_PORT}/v1/logs", b"", {"Content-Type": "application/x-protobuf"})
        except urllib.error.HTTPError:
            pass
        return True

    wait(up, 30, "Fluent Bit's opentelemetry input")
    return p


def send(endpoint, run, t0):
    out = subprocess.run(
        [sys.executable, CLIENT, endpoint, "--resource", f"lockstep.run={run}", "--t0", str(t0)],
        capture_output=True,
        text=True,
    )
    if out.stdout.strip() != "export SUCCESS":
        sys.exit(f"client to {endpoint}: {out.stdout} {out.stderr}")


def query(run, n, t0):
    params = urllib.parse.urlencode(
        {
            "query": f'{{service_name=~".+"}} | lockstep_run="{run}"',
            "start": str(t0 - 3_600_000_000_000),
            "end": str(time.time_ns() + 60_000_000_000),
            "limit": "1000",
            "direction": "forward",
        }
    )
    hdr = {"X-Loki-Response-Encoding-Flags": "categorize-labels"}

    def get():
        _, body = http("GET", f"{LOKI}/loki/api/v1/query_range?{params}", headers=hdr)
        res = json.loads(body)["data"]["result"]
        entries = {}
        for stream in res:
            labels = stream["stream"]
            for v in stream["values"]:
                ts, line = v[0], v[1]
                meta = v[2] if len(v) > 2 else {}
                sm = dict(meta.get("structuredMetadata", {}))
                entries.setdefault(line, []).append((ts, labels, sm))
        return entries

    got = {}

    def enough():
        nonlocal got
        got = get()
        return sum(len(v) for v in got.values()) >= n

    wait(enough, 60, f"{n} entries of run {run}")
    return got


def compare(direct, through):
    unknown = 0
    known = {}
    for line in sorted(set(direct) | set(through)):
        if line not in direct or line not in through:
            print(f"  MISSING {'through Fluent Bit' if line in direct else 'direct'}: {line!r}")
            unknown += 1
            continue
        (ts_a, la, ma), (ts_b, lb, mb) = direct[line][0], through[line][0]
        diffs = []
        if ts_a != ts_b:
            diffs.append(f"timestamp {ts_a} vs {ts_b}")
        for k in sorted(set(la) | set(lb)):
            if la.get(k) != lb.get(k):
                diffs.append(f"label {k}: {la.get(k)!r} vs {lb.get(k)!r}")
        for k in sorted((set(ma) | set(mb)) - IGNORED):
            if ma.get(k) != mb.get(k):
                diffs.append(f"metadata {k}: {ma.get(k)!r} vs {mb.get(k)!r}")
                if k in KNOWN:
                    known[k] = KNOWN[k]
                else:
                    unknown += 1
        print(f"  {line[:60]!r}: " + ("same" if not diffs else "; ".join(diffs)))
    print("known differences (README):" if known else "known differences: none seen")
    for k, why in known.items():
        print(f"  {k}: {why}")
    return unknown


METRICS_PORT = OTLP_PORT + 1


def metric(name):
    _, body = http("GET", f"http://127.0.0.1:{METRICS_PORT}/metrics")
    return sum(
        float(l.rsplit(" ", 1)[1])
        for l in body.decode().splitlines()
        if l.startswith(name + "{") or l.startswith(name + " ")
    )


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(f[11]) + int(f[12])) / tick


def bench(work, n_requests):
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as svc
    from opentelemetry.proto.common.v1 import common_pb2 as c
    from opentelemetry.proto.logs.v1 import logs_pb2 as lg
    from opentelemetry.proto.resource.v1 import resource_pb2 as rs

    def kv(k, v):
        return c.KeyValue(key=k, value=c.AnyValue(string_value=v))

    def request(t0):
        recs = []
        for i in range(500):
            recs.append(
                lg.LogRecord(
                    time_unix_nano=t0 + i,
                    observed_time_unix_nano=t0 + i + 1000,
                    severity_number=9 if i % 10 else 17,
                    severity_text="INFO" if i % 10 else "ERROR",
                    body=c.AnyValue(string_value=f"request {i} handled"),
                    attributes=[
                        kv("http.route", "/cart"),
                        c.KeyValue(key="http.status_code", value=c.AnyValue(int_value=200)),
                        c.KeyValue(key="duration_ms", value=c.AnyValue(double_value=12.5)),
                    ],
                    trace_id=os.urandom(16),
                    span_id=os.urandom(8),
                    flags=1,
                )
            )
        return svc.ExportLogsServiceRequest(
            resource_logs=[
                lg.ResourceLogs(
                    resource=rs.Resource(attributes=[kv("service.name", "bench"), kv("host.name", "edge")]),
                    scope_logs=[lg.ScopeLogs(scope=c.InstrumentationScope(name="bench"), log_records=recs)],
                )
            ]
        ).SerializeToString()

    results = {"loki": [], "off": [], "off+sm": []}
    for round_ in range(int(os.environ.get("ROUNDS", "3"))):
        for mapping in ("loki", "off", "off+sm"):
            body = request(time.time_ns())
            fb = start_fluent_bit(work, f"bench-{mapping}-{round_}", mapping, sampling=True)
            c0 = cpu_seconds(fb.pid)
            for _ in range(n_requests):
                http("POST", f"http://127.0.0.1:{OTLP_PORT}/v1/logs", body, {"Content-Type": "application/x-protobuf"})
            want = 500 * n_requests
            if POLICY:
                # every record taken, nothing waiting, the queue sent
                wait(
                    lambda: metric("lockstep_loki_records_in_total") >= want
                    and metric("lockstep_loki_waiting_records") == 0
                    and metric("lockstep_loki_queue_records") == 0,
                    300,
                    f"{want} records decided and sent",
                )
            else:
                wait(lambda: metric("lockstep_loki_entries_sent_total") >= want, 300, f"{want} entries sent")
            cpu = cpu_seconds(fb.pid) - c0
            sent_n = metric("lockstep_loki_entries_sent_total")
            fb.send_signal(signal.SIGTERM)
            fb.wait(timeout=30)
            results[mapping].append(cpu)
            sent = "" if not POLICY else f", {int(sent_n)} sent"
            print(f"  round {round_ + 1} otlp_mapping {mapping}: {cpu:.2f} s CPU for {want} records{sent}")
    best = {k: min(v) for k, v in results.items()}
    med = {k: sorted(v)[len(v) // 2] for k, v in results.items()}
    print(
        f"medians: loki {med['loki']:.2f} s, off {med['off']:.2f} s (ratio "
        f"{med['loki'] / med['off']:.3f}), off+sm {med['off+sm']:.2f} s"
    )
    print(
        f"best of three: loki {best['loki']:.2f} s, off {best['off']:.2f} s (ratio "
        f"{best['loki'] / best['off']:.3f}), off with the same structured metadata as static "
        f"pairs {best['off+sm']:.2f} s (ratio {best['loki'] / best['off+sm']:.3f})"
    )


def main():
    for v, name in ((FLUENT_BIT, "FLUENT_BIT"), (LOKI_BIN, "LOKI_BIN"), (LOKI_CONFIG, "LOKI_CONFIG")):
        if not v:
            sys.exit(f"set {name}")
    work = tempfile.mkdtemp(prefix="diff-otlp-")
    print(f"work dir {work}")
    loki = start_loki(work)
    fb = None
    try:
        fb = start_fluent_bit(work, "diff", "loki")
        t0 = time.time_ns() - 60_000_000_000
        run = str(os.getpid())
        send(f"{LOKI}/otlp/v1/logs", f"direct-{run}", t0)
        send(f"http://127.0.0.1:{OTLP_PORT}/v1/logs", f"fb-{run}", t0)
        n = 6
        direct = query(f"direct-{run}", n, t0)
        through = query(f"fb-{run}", n, t0)
        fb.send_signal(signal.SIGTERM)
        fb.wait(timeout=30)
        fb = None
        first = sorted(through)[0]
        _, labels, sm = through[first][0]
        print(f"through Fluent Bit, {first!r}: labels {json.dumps(labels, sort_keys=True)}")
        print(f"  structured metadata {json.dumps(sm, sort_keys=True)}")
        print("record by record (direct to Loki's /otlp/v1/logs vs through Fluent Bit and lockstep_loki):")
        unknown = compare(direct, through)
        if "--bench" in sys.argv:
            bench(work, int(sys.argv[sys.argv.index("--bench") + 1]))
        if unknown:
            print(f"{unknown} unexplained differences")
            return 1
        print("no unexplained difference")
        return 0
    finally:
        if fb:
            fb.kill()
        loki.send_signal(signal.SIGTERM)
        loki.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
