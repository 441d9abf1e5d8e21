#!/usr/bin/env python3
"""Manual check: every config under fluent-bit-conf/ (except the bench ones) starts as
shipped in a real Fluent Bit and does its job.

    FLUENT_BIT=/path/to/fluent-bit scripts/check-fluent-bit-confs.py [NAME ...]

With NAMEs, only the configs whose path contains one of them run (`loki-sampling`,
`filter/fluent-bit.yaml`, `fluent-bit-sampling` ...). LOCKSTEP_LOKI_SO, LOCKSTEP_WASM,
LOKI_RECEIVER and LOCKSTEP point at other copies of the artifacts (scripts/fbcheck.py);
KEEP=1 keeps the scratch directories.

Each config is run as written, with only its paths and addresses pointed at a scratch
directory and loopback (/etc/fluent-bit/lockstep holds dist/lockstep_filter.wasm,
dist/lockstep_out_loki.so, the config's lockstep-policy.yaml and plugins.conf; the Loki
URL is the Loki-compatible receiver; metrics on a free port). golden/four-schemas/logs.jsonl
is appended to the file its tail input reads. A config passes when Fluent Bit logs no
error, the filter loaded the policy, and as many records come out (stdout, or entries in
the receiver) as `lockstep replay` keeps with the same policy.

loki-sampling/ (one lockstep_loki output with `policy_file`, no filter; tail and
opentelemetry inputs) is run the same way, plus `decision_wait` shortened to 2 s and the
opentelemetry input on a free port:
- golden/four-schemas/logs.jsonl is appended to the tail input's file, and the golden/otlp
  events are POSTed to the opentelemetry input as OTLP/HTTP JSON (/v1/logs): each event
  back as the LogRecord Fluent Bit reads it (timeUnixNano/observedTimeUnixNano as
  strings, shifted to end 10 s before now; severityNumber/Text; traceId/spanId as hex,
  `""` for the zero-length ids; attributes as a KeyValue list; a `{"log": text}` body as
  a string body, any other as a kvlistValue), so the ids reach the output as Fluent Bit
  itself puts them in the event metadata;
- the expectation per set is `lockstep replay SET --through-output --plugin SO` with the
  config's policy (the emulation): "lines of kept traces: A of B stored" + "lines with no
  trace: C of D stored", which must be COMPLETE (A = B);
- it passes when the receiver holds exactly A + C entries of each set, the plugin logged
  "sampling by trace with ...", Fluent Bit logged no error, and, by content, every stored
  entry is a distinct golden line, every line of every kept trace is there and no line of a
  dropped trace. The trace decisions for that are computed here from spans.jsonl alone
  (the golden README's rule: status_code, latency on the truncated trace duration,
  probabilistic by FNV-1a with the Collector's threshold); a tail line is recognised by
  its JSON body and ids (the trace_id/span_id the output moved into structured metadata
  put back), an OTLP one by its timestamp.

fluent-bit-sampling/ (traces too) is checked by scripts/fluent-bit-sampling-conf-check.py,
which this script runs last. Needs: scripts/build-plugins.sh, `cargo build --release -p
lockstep-hosts --example loki_receiver`, a lockstep binary (target/release or
target/debug), PyYAML for the sampling checks. Builds and fetches nothing.
"""
import json, os, re, shutil, subprocess, sys, tempfile, time, urllib.request
from fractions import Fraction

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fbcheck import ROOT as root, artifacts, fluent_bit, free_port, replay, wait_for_port  # noqa: E402

fb = fluent_bit()
wasm, so, receiver_bin, lockstep = artifacts()
conf_root = os.path.join(root, "fluent-bit-conf")
golden = os.path.join(root, "golden", "four-schemas")
golden_otlp = os.path.join(root, "golden", "otlp")

CONFIGS = [
    ("filter/fluent-bit.conf", "stdout"),
    ("filter/fluent-bit.yaml", "stdout"),
    ("loki/fluent-bit.conf", "loki"),
    ("loki/fluent-bit.yaml", "loki"),
    ("loki-sampling/fluent-bit.conf", "sampling"),
    ("loki-sampling/fluent-bit.yaml", "sampling"),
]


# ---- the loki-sampling part ------------------------------------------------------------

def replay_through_output(set_dir, policy, work, name):
    """`lockstep replay --through-output` of a golden set with the config's policy and
    the plugin under test: (A + C, report), A = lines of kept traces stored, C = lines
    with no trace stored."""
    g = os.path.join(work, "golden-" + name)
    os.makedirs(g)
    for f in os.listdir(set_dir):
        if f.endswith(".jsonl"):
            shutil.copy(os.path.join(set_dir, f), g)
    shutil.copy(policy, os.path.join(g, "lockstep-policy.yaml"))
    r = subprocess.run([lockstep, "replay", g, "--through-output", "--plugin", so], capture_output=True, text=True)
    a = re.search(r"lines of kept traces: (\d+) of (\d+) stored", r.stdout)
    c = re.search(r"lines with no trace: (\d+) of (\d+) stored", r.stdout)
    if r.returncode != 0 or not a or not c or "COMPLETE" not in r.stdout:
        sys.exit(f"lockstep replay {name} --through-output failed ({r.returncode}): {r.stdout}{r.stderr}")
    head = "\n".join(l for l in r.stdout.splitlines() if l.startswith(("records in", "lines ")))
    return int(a.group(1)) + int(c.group(1)), head


def go_threshold(pct):
    """The Collector's probabilistic threshold: floor((2^64-1) * r), the product rounded
    to 64 significant bits (half to even) first (as crates/lockstep-policy/src/sampling.rs)."""
    r = Fraction(pct / 100.0)
    if r <= 0:
        return 0
    n = (2**64 - 1) * r.numerator  # r = numerator / 2^k
    k = r.denominator.bit_length() - 1
    shift = n.bit_length() - 64
    if shift > 0:
        q, rem = divmod(n, 1 << shift)
        half = 1 << (shift - 1)
        if rem > half or (rem == half and q & 1):
            q += 1
        n = q << shift
    return min(n >> k, 2**64 - 1)


def fnv64a(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def trace_decisions(set_dir, policy_path):
    """Each trace's decision from spans.jsonl alone, or None when the policy uses a rule
    this evaluator does not know."""
    import yaml
    pol = yaml.safe_load(open(policy_path))
    traces = {}
    for l in open(os.path.join(set_dir, "spans.jsonl")):
        if l.strip():
            s = json.loads(l)
            t = traces.setdefault(s["trace_id"].lower(), [None, None, set()])
            t[0] = s["start_ns"] if t[0] is None else min(t[0], s["start_ns"])
            t[1] = s["end_ns"] if t[1] is None else max(t[1], s["end_ns"])
            t[2].add(s["status"])
    out = {}
    for tid, (start, end, statuses) in traces.items():
        dur_ms = max(0, end - start) // 1_000_000
        keep = False
        for p in pol.get("policies") or []:
            kind = p.get("type")
            if kind == "status_code":
                keep |= bool(statuses & set(p["status_code"]["status_codes"]))
            elif kind == "latency":
                c = p["latency"]
                up = c.get("upper_threshold_ms", 0)
                keep |= dur_ms > c["threshold_ms"] and (up == 0 or dur_ms <= up)
            elif kind == "probabilistic":
                c = p["probabilistic"]
                salt = (c.get("hash_salt") or "default-hash-seed").encode()
                keep |= fnv64a(salt + bytes.fromhex(tid)) <= go_threshold(float(c["sampling_percentage"]))
            elif kind == "always_sample":
                keep = True
            else:
                return None
        out[tid] = keep
    return out


def otlp_value(v):
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, dict):
        return {"kvlistValue": {"values": [{"key": k, "value": otlp_value(x)} for k, x in v.items()]}}
    if isinstance(v, list):
        return {"arrayValue": {"values": [otlp_value(x) for x in v]}}
    return {"stringValue": str(v)}


def otlp_log_record(ev, shift):
    """A golden/otlp event back as the OTLP/JSON LogRecord that Fluent Bit's opentelemetry
    input turns into it (shared/facts/fluent-bit-otlp-logs.md)."""
    md = ev["metadata"]["otlp"]
    rec = {"timeUnixNano": str(ev["time_ns"] + shift)}
    if "observed_timestamp" in md:
        rec["observedTimeUnixNano"] = str(md["observed_timestamp"] + shift)
    if "severity_number" in md:
        rec["severityNumber"] = md["severity_number"]
    if "severity_text" in md:
        rec["severityText"] = md["severity_text"]
    body = ev["body"]
    rec["body"] = otlp_value(body["log"]) if list(body) == ["log"] else otlp_value(body)
    rec["attributes"] = [{"key": k, "value": otlp_value(v)} for k, v in (md.get("attributes") or {}).items()]
    for key, name in (("trace_id", "traceId"), ("span_id", "spanId")):
        if key in md:
            rec[name] = md[key]["$bin"]  # "" for the zero-length ones: the input drops it
    if "trace_flags" in md:
        rec["flags"] = md["trace_flags"]  # the standard key (5.1.1's JSON path ignores it)
    return rec


def post_otlp_logs(port, events, shift, batch=64):
    """The events, in time order, as OTLP/JSON ExportLogsServiceRequests of `batch` records."""
    statuses = []
    for i in range(0, len(events), batch):
        req = {"resourceLogs": [{"resource": {"attributes": []}, "scopeLogs": [
            {"scope": {"name": "golden-otlp"}, "logRecords": [otlp_log_record(e, shift) for e in events[i:i + batch]]}]}]}
        r = urllib.request.Request(f"http://127.0.0.1:{port}/v1/logs", data=json.dumps(req).encode(),
                                   headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(r, timeout=10) as resp:
            statuses.append(resp.status)
    return statuses


def norm(v):
    """JSON values compared across the plugin's rendering (200 vs 200.0)."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    return [norm(x) for x in v]


def tail_key(rec, md):
    """A four-schemas line by content: the record without trace_id/span_id, and those ids
    (from the record or from the structured metadata the output moved them into)."""
    rest = {k: v for k, v in rec.items() if k not in ("trace_id", "span_id")}
    tid = str(md.get("trace_id") or rec.get("trace_id") or "").lower()
    sid = str(md.get("span_id") or rec.get("span_id") or "").lower()
    return json.dumps(norm(rest), sort_keys=True), tid, sid


def content_check(entries, shift, policy_path):
    """Splits the stored entries into the two sets by content and checks them against the
    trace decisions. Returns (lines, per-set stored counts, problems)."""
    problems, out, counts = [], [], {}
    sets = {}
    for name, set_dir, fname in (("four-schemas", golden, "logs.jsonl"), ("otlp", golden_otlp, "events.jsonl")):
        dec = trace_decisions(set_dir, policy_path)
        recs = [json.loads(l) for l in open(os.path.join(set_dir, fname)) if l.strip()]
        truth = [json.loads(l) for l in open(os.path.join(set_dir, "lines.jsonl")) if l.strip()]
        sets[name] = (dec, recs, truth)
    # four-schemas: by content; otlp: by timestamp
    _, recs4, _ = sets["four-schemas"]
    by_key = {}
    for i, r in enumerate(recs4):
        by_key.setdefault(tail_key(r, {}), []).append(i + 1)
    _, evs, _ = sets["otlp"]
    by_ts = {e["time_ns"] + shift: i + 1 for i, e in enumerate(evs)}
    evs_by_line = {i + 1: e for i, e in enumerate(evs)}
    stored = {"four-schemas": [], "otlp": []}
    unknown = []
    otlp_md_ids = 0
    for e in entries:
        md = dict(e.get("structured_metadata") or [])
        ts = int(e["ts_ns"])  # the receiver's dump writes it as a string
        if ts in by_ts:
            n = by_ts[ts]
            ev = evs_by_line[n]
            body = json.loads(e["line"])
            if norm(body) != norm(ev["body"]):
                problems.append(f"otlp line {n}: body {e['line']} is not {json.dumps(ev['body'])}")
            otlp_md_ids += bool(md.get("trace_id"))
            stored["otlp"].append(n)
            continue
        try:
            key = tail_key(json.loads(e["line"]), md)
        except ValueError:
            unknown.append(e["line"])
            continue
        if by_key.get(key):
            stored["four-schemas"].append(by_key[key].pop(0))
        else:
            unknown.append(e["line"])
    if unknown:
        problems.append(f"{len(unknown)} stored entries match no golden line, e.g. {unknown[0][:200]}")
    for name, lines in stored.items():
        dec, recs, truth = sets[name]
        counts[name] = len(lines)
        got = set(lines)
        if len(got) != len(lines):
            problems.append(f"{name}: {len(lines) - len(got)} lines stored twice")
        if dec is None:
            out.append(f"{name}: the policy has a rule this check cannot evaluate; content not checked")
            continue
        kept_lines = {t["line"] for t in truth if t["trace_id"] and dec[t["trace_id"].lower()]}
        dropped_lines = {t["line"] for t in truth if t["trace_id"] and not dec[t["trace_id"].lower()]}
        untraced = {t["line"] for t in truth if not t["trace_id"]}
        missing = kept_lines - got
        orphans = got & dropped_lines
        alone = got & untraced
        out.append(f"{name} by content: lines of kept traces {len(kept_lines & got)} of {len(kept_lines)} stored "
                   f"({sum(dec.values())} of {len(dec)} traces kept by the spans); lines of dropped traces "
                   f"{len(orphans)} of {len(dropped_lines)} stored; lines with no trace {len(alone)} of {len(untraced)} stored")
        if missing:
            problems.append(f"{name}: lines of kept traces missing: {sorted(missing)[:20]}")
        if orphans:
            problems.append(f"{name}: lines of dropped traces stored: {sorted(orphans)[:20]}")
    out.append(f"otlp entries with a trace_id in structured metadata: {otlp_md_ids} of {counts['otlp']}")
    return out, counts, problems


# ---- one config ------------------------------------------------------------------------

def check(rel, kind):
    src_dir = os.path.join(conf_root, os.path.dirname(rel))
    work = tempfile.mkdtemp(prefix="lockstep-conf-")
    try:
        etc, logs, spool = (os.path.join(work, d) for d in ("etc", "logs", "spool"))
        for d in (etc, logs):
            os.makedirs(d)
        policy = os.path.join(src_dir, "lockstep-policy.yaml")
        if not os.path.exists(policy):
            policy = os.path.join(conf_root, "filter", "lockstep-policy.yaml")
        # under the names the configs use, whatever the copies are called
        shutil.copy(wasm, os.path.join(etc, "lockstep_filter.wasm"))
        shutil.copy(so, os.path.join(etc, "lockstep_out_loki.so"))
        shutil.copy(policy, etc)
        with open(os.path.join(etc, "loki-token"), "w") as f:
            f.write("check-token\n")
        want_by_set = {}
        if kind == "sampling":
            want_by_set["four-schemas"], rep4 = replay_through_output(golden, policy, work, "four-schemas")
            want_by_set["otlp"], rep_otlp = replay_through_output(golden_otlp, policy, work, "otlp")
            want = sum(want_by_set.values())
        else:
            _, want, _ = replay(lockstep, wasm, golden, policy, work)

        receiver = None
        url = ""
        dump = os.path.join(work, "loki.jsonl")
        if kind in ("loki", "sampling"):
            receiver = subprocess.Popen([receiver_bin], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env={**os.environ, "LOKI_RECEIVER_DUMP": dump})
            url = receiver.stdout.readline().strip()
        otlp_port = free_port()

        def rewrite(text, main):
            text = text.replace("/etc/fluent-bit/lockstep", etc).replace("/var/log/app", logs)
            text = text.replace("/var/lib/fluent-bit/lockstep-loki-rejected.jsonl", os.path.join(work, "rejected.jsonl"))
            text = text.replace("/var/lib/fluent-bit/lockstep-loki", spool)
            text = text.replace("https://loki.example.net/loki/api/v1/push", url)
            text = re.sub(r"(?im)^(\s*metrics_listen\s*:?\s*)2021\s*$", lambda m: f"{m.group(1)}127.0.0.1:{free_port()}", text)
            if kind == "sampling" and main:
                text, n = re.subn(r"(?im)^(\s*decision_wait\s*:?\s*)\S+\s*$", lambda m: f"{m.group(1)}2s", text)
                text, k = re.subn(r"(?im)^(\s*port\s*:?\s*)4318\s*$", lambda m: f"{m.group(1)}{otlp_port}", text)
                if (n, k) != (1, 1):
                    sys.exit(f"{rel}: expected one decision_wait and one port 4318 to rewrite, found {n} and {k}")
            return text

        # The config's own directory (parsers.conf beside it), with the paths rewritten.
        cdir = os.path.join(work, "conf")
        shutil.copytree(src_dir, cdir)
        for name in os.listdir(cdir):
            p = os.path.join(cdir, name)
            if name.endswith((".conf", ".yaml")):
                with open(p) as f:
                    text = rewrite(f.read(), name == os.path.basename(rel))
                with open(p, "w") as f:
                    f.write(text)
        if os.path.exists(os.path.join(cdir, "plugins.conf")):
            shutil.copy(os.path.join(cdir, "plugins.conf"), etc)
        open(os.path.join(logs, "app.log"), "w").close()

        log_path = os.path.join(work, "fluent-bit.log")
        out_path = os.path.join(work, "stdout.txt")
        proc = subprocess.Popen([fb, "-c", os.path.join(cdir, os.path.basename(rel))],
                                stdout=open(out_path, "w"), stderr=open(log_path, "w"),
                                env={**os.environ, "HOSTNAME": "edge-check"}, cwd=cdir)
        shift = 0
        if kind == "sampling":
            wait_for_port(otlp_port, proc, log_path)
        time.sleep(2)  # start-up and the tail input's first scan
        with open(os.path.join(logs, "app.log"), "a") as f:
            f.write(open(os.path.join(golden, "logs.jsonl")).read())
        if kind == "sampling":
            events = [json.loads(l) for l in open(os.path.join(golden_otlp, "events.jsonl")) if l.strip()]
            # recent timestamps, spaced as in the set, the last one 10 s ago
            shift = time.time_ns() - 10 * 10**9 - events[-1]["time_ns"]
            statuses = post_otlp_logs(otlp_port, events, shift)
            print(f"     POST /v1/logs: {len(events)} records in {len(statuses)} requests, statuses {sorted(set(statuses))}")
        got = 0
        deadline = time.time() + (40 if kind == "sampling" else 20)
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
            if kind == "stdout":
                got = len(re.findall(r"^\[\d+\] app\.", open(out_path).read(), re.M))
            else:
                line = receiver.stdout.readline()
                m = re.search(r"stored=(\d+)", line)
                got = int(m.group(1)) if m else got
            if got >= want:
                # anything more would show (after a sampling decision, a whole decision_wait)
                time.sleep(4 if kind == "sampling" else 1.5)
                if kind == "stdout":
                    got = len(re.findall(r"^\[\d+\] app\.", open(out_path).read(), re.M))
                break
        early_exit = proc.poll() is not None
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if receiver:
            receiver.stdin.close()
            for line in receiver.stdout:
                m = re.search(r"stored=(\d+)", line)
                got = int(m.group(1)) if m else got
            receiver.wait(timeout=10)
        log = open(log_path).read() + open(out_path).read()
        errors = [l for l in log.splitlines() if "[error]" in l]
        if kind == "sampling":
            loaded_line = next((l for l in log.splitlines() if "sampling by trace with " in l), None)
            loaded = loaded_line is not None
        else:
            loaded = "[lockstep_filter] policy " in log
        ok = not errors and loaded and not early_exit and got == want
        detail = []
        if kind == "sampling":
            entries = [json.loads(l) for l in open(dump) if l.strip()] if os.path.exists(dump) else []
            lines, counts, problems = content_check(entries, shift, policy)
            for name in ("four-schemas", "otlp"):
                if counts.get(name) != want_by_set[name]:
                    problems.append(f"{name}: {counts.get(name)} entries stored, {want_by_set[name]} expected")
            ok = ok and not problems
            detail = ["replay four-schemas --through-output: " + rep4.replace("\n", "; "),
                      "replay otlp --through-output: " + rep_otlp.replace("\n", "; "),
                      f"stored: four-schemas {counts.get('four-schemas')} (expected {want_by_set['four-schemas']}), "
                      f"otlp {counts.get('otlp')} (expected {want_by_set['otlp']})",
                      *lines, *(["plugin: " + loaded_line.strip()] if loaded else []),
                      *[l for l in log.splitlines() if "[ warn]" in l][:5],
                      *["PROBLEM " + p for p in problems]]
        what = "the plugin did not log 'sampling by trace with'" if kind == "sampling" else "the filter did not load the policy"
        print(f"{'ok  ' if ok else 'FAIL'} {rel}: {got} records out, {want} expected"
              f"{'' if loaded else '; ' + what}"
              f"{'; Fluent Bit exited early' if early_exit else ''}")
        for l in detail + errors[:5]:
            print(f"     {l}")
        return ok
    finally:
        if os.environ.get("KEEP"):
            print(f"     kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


only = sys.argv[1:]
selected = [(rel, kind) for rel, kind in CONFIGS if not only or any(o in rel for o in only)]
results = [check(rel, kind) for rel, kind in selected]
if not only or any(o in "fluent-bit-sampling/fluent-bit.yaml" for o in only):
    print("fluent-bit-sampling/fluent-bit.yaml (traces and logs):")
    r = subprocess.run([sys.executable, os.path.join(root, "scripts", "fluent-bit-sampling-conf-check.py")],
                       capture_output=True, text=True)
    print("     " + "\n     ".join(r.stdout.strip().splitlines()[-4:]))
    results.append(r.returncode == 0)
print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
sys.exit(0 if all(results) else 1)
