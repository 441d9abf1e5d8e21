#!/usr/bin/env python3
"""Manual end-to-end check of fluent-bit-conf/fluent-bit-sampling/ in a real Fluent Bit.

    FLUENT_BIT=/path/to/fluent-bit scripts/fluent-bit-sampling-conf-check.py

Runs the shipped fluent-bit.yaml as written, with only its paths and addresses pointed at
a scratch directory and loopback (and `decision_wait` shortened to 2 s):
- the golden/fluent-bit spans are POSTed as OTLP/JSON to its opentelemetry input, whose
  `sampling` processors decide them; the kept traces go to its opentelemetry output,
  caught here on loopback;
- the golden/fluent-bit logs are appended to the file its tail input reads, go through
  dist/lockstep_filter.wasm (with lockstep-policy.yaml, the import of the same config)
  and dist/lockstep_out_loki.so into the Loki-compatible receiver.
It then checks that Fluent Bit forwarded exactly the traces `lockstep replay` computes
from the spans with Fluent Bit's rules, and that the receiver holds exactly the records
the replay keeps, each belonging to a forwarded trace: the logs follow the traces in the
real host. Needs: scripts/build-plugins.sh, `cargo build --release -p lockstep-hosts
--example loki_receiver`, a lockstep binary (target/release or target/debug), PyYAML.
Builds and fetches nothing.
"""
import http.server, json, os, re, shutil, signal, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fbcheck import ROOT as root, artifacts, fluent_bit, free_port, post_traces, replay, wait_for_port  # noqa: E402

try:
    import yaml
except ImportError:
    sys.exit("needs PyYAML: pip install pyyaml")

fb = fluent_bit()
wasm, so, receiver_bin, lockstep = artifacts()
conf_dir = os.path.join(root, "fluent-bit-conf", "fluent-bit-sampling")
golden = os.path.join(root, "golden", "fluent-bit")


work = tempfile.mkdtemp(prefix="lockstep-fb-conf-")
try:
    etc, logs, spool = (os.path.join(work, d) for d in ("etc", "logs", "spool"))
    for d in (etc, logs):
        os.makedirs(d)
    shutil.copy(wasm, os.path.join(etc, "lockstep_filter.wasm"))  # the names the config uses
    shutil.copy(so, os.path.join(etc, "lockstep_out_loki.so"))
    shutil.copy(os.path.join(conf_dir, "lockstep-policy.yaml"), etc)

    # The expectation, from the emulation: the golden logs and spans with this config's policy.
    report, want_records, want_traces = replay(lockstep, wasm, golden, os.path.join(conf_dir, "lockstep-policy.yaml"), work)
    print(report)

    # Traces catcher: Fluent Bit's opentelemetry output POSTs protobuf to /v1/traces.
    spans = [json.loads(l) for l in open(os.path.join(golden, "spans.jsonl")) if l.strip()]
    ids = {s["trace_id"] for s in spans}
    forwarded = set()

    class Catch(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            for t in ids:
                if bytes.fromhex(t) in body or t.encode() in body:
                    forwarded.add(t)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    catcher = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Catch)
    threading.Thread(target=catcher.serve_forever, daemon=True).start()

    receiver = subprocess.Popen([receiver_bin], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "LOKI_RECEIVER_DUMP": os.path.join(work, "loki.jsonl")})
    loki_url = receiver.stdout.readline().strip()

    # The shipped config, paths and addresses swapped for the scratch ones.
    text = open(os.path.join(conf_dir, "fluent-bit.yaml")).read()
    text = text.replace("/etc/fluent-bit/lockstep", etc).replace("/var/log/app", logs)
    text = text.replace("/var/lib/fluent-bit/lockstep-loki", spool)
    text = text.replace("https://loki.example.net/loki/api/v1/push", loki_url)
    cfg = yaml.safe_load(text)
    in_port = free_port()
    for i in cfg["pipeline"]["inputs"]:
        if i["name"] == "opentelemetry":
            i["listen"], i["port"] = "127.0.0.1", in_port
            for p in i["processors"]["traces"]:
                if p.get("type") == "tail":
                    p["sampling_settings"]["decision_wait"] = 2
    for o in cfg["pipeline"]["outputs"]:
        if o["name"] == "opentelemetry":
            o.update({"host": "127.0.0.1", "port": catcher.server_address[1], "tls": "off"})
        if o["name"] == "lockstep_loki":
            o["metrics_listen"] = f"127.0.0.1:{free_port()}"
    conf = os.path.join(work, "fluent-bit.yaml")
    with open(conf, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    open(os.path.join(logs, "app.log"), "w").close()

    fb_log = os.path.join(work, "fluent-bit.log")
    fbp = subprocess.Popen([fb, "-c", conf], stdout=open(fb_log, "w"), stderr=subprocess.STDOUT,
                           env={**os.environ, "HOSTNAME": "edge-check"})
    try:
        wait_for_port(in_port, fbp, fb_log)
        time.sleep(1.5)  # the tail input's first scan
        post_traces(in_port, spans)
        with open(os.path.join(logs, "app.log"), "a") as f:
            f.write(open(os.path.join(golden, "logs.jsonl")).read())
        # the tail decision (<= 2 W), flushes, the drain's linger (5 s)
        deadline = time.time() + 30
        stored = 0
        while time.time() < deadline:
            time.sleep(1)
            line = receiver.stdout.readline().strip()
            m = re.search(r"stored=(\d+)", line)
            stored = int(m.group(1)) if m else stored
            if stored >= want_records and len(forwarded) >= want_traces and time.time() > deadline - 20:
                break
    finally:
        fbp.send_signal(signal.SIGTERM)
        try:
            fbp.wait(timeout=15)
        except subprocess.TimeoutExpired:
            fbp.kill()
        receiver.stdin.close()
        receiver.wait(timeout=10)
        catcher.shutdown()

    log = open(fb_log).read()
    errors = [l for l in log.splitlines()
              if "[error]" in l or ("[ warn]" in l and "service will shutdown" not in l)]
    entries = [json.loads(l) for l in open(os.path.join(work, "loki.jsonl")) if l.strip()]
    entry_traces = set()
    for e in entries:
        md = dict(e.get("structured_metadata") or [])
        if md.get("trace_id"):
            # as the service wrote it (billing writes upper case); lockstep reads ids case-insensitively
            entry_traces.add(md["trace_id"].lower())
    print("fluent bit log (filter and output lines):")
    for l in log.splitlines():
        if "lockstep" in l or "[error]" in l or "[ warn]" in l:
            print("  " + l)
    print(f"traces forwarded by Fluent Bit: {len(forwarded)} (replay truth: {want_traces})")
    print(f"log entries in the receiver: {len(entries)} (replay keeps: {want_records})")
    orphans = entry_traces - forwarded
    print(f"entries carrying a trace_id in structured metadata: {sum(1 for e in entries if dict(e.get('structured_metadata') or []).get('trace_id'))}, "
          f"of {len(entry_traces)} traces; of those, not forwarded by Fluent Bit: {len(orphans)}")
    ok = not errors and len(forwarded) == want_traces and len(entries) == want_records and not orphans
    print("OK" if ok else "MISMATCH" + (f" ({len(errors)} error/warn lines)" if errors else ""))
    sys.exit(0 if ok else 1)
finally:
    if os.environ.get("KEEP"):
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
