#!/usr/bin/env python3
"""Manual check: every config under fluent-bit-conf/ (except the bench ones) starts as
shipped in a real Fluent Bit and does its job.

    FLUENT_BIT=/path/to/fluent-bit scripts/check-fluent-bit-confs.py

Each config is run as written, with only its paths and addresses pointed at a scratch
directory and loopback (/etc/fluent-bit/lockstep holds dist/lockstep_filter.wasm,
dist/lockstep_out_loki.so, the config's lockstep-policy.yaml and plugins.conf; the Loki
URL is the Loki-compatible receiver; metrics on a free port). golden/four-schemas/logs.jsonl
is appended to the file its tail input reads. A config passes when Fluent Bit logs no
error, the filter loaded the policy, and as many records come out (stdout, or entries in
the receiver) as `lockstep replay` keeps with the same policy.
fluent-bit-sampling/ (traces too) is checked by scripts/fluent-bit-sampling-conf-check.py,
which this script runs last. Needs: scripts/build-plugins.sh, `cargo build --release -p
lockstep-harness --example loki_receiver`, a lockstep binary (target/release or
target/debug), PyYAML for the sampling check. Builds and fetches nothing.
"""
import os, re, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fbcheck import ROOT as root, artifacts, fluent_bit, free_port, replay  # noqa: E402

fb = fluent_bit()
wasm, so, receiver_bin, lockstep = artifacts()
conf_root = os.path.join(root, "fluent-bit-conf")
golden = os.path.join(root, "golden", "four-schemas")

CONFIGS = [
    ("filter/fluent-bit.conf", "stdout"),
    ("filter/fluent-bit.yaml", "stdout"),
    ("loki/fluent-bit.conf", "loki"),
    ("loki/fluent-bit.yaml", "loki"),
]


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
        for f in (wasm, so, policy):
            shutil.copy(f, etc)
        with open(os.path.join(etc, "loki-token"), "w") as f:
            f.write("check-token\n")
        _, want, _ = replay(lockstep, wasm, golden, policy, work)

        receiver = None
        url = ""
        if kind == "loki":
            receiver = subprocess.Popen([receiver_bin], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            url = receiver.stdout.readline().strip()

        def rewrite(text):
            text = text.replace("/etc/fluent-bit/lockstep", etc).replace("/var/log/app", logs)
            text = text.replace("/var/lib/fluent-bit/lockstep-loki-rejected.jsonl", os.path.join(work, "rejected.jsonl"))
            text = text.replace("/var/lib/fluent-bit/lockstep-loki", spool)
            text = text.replace("https://loki.example.net/loki/api/v1/push", url)
            return re.sub(r"(?im)^(\s*metrics_listen\s*:?\s*)2021\s*$", lambda m: f"{m.group(1)}127.0.0.1:{free_port()}", text)

        # The config's own directory (parsers.conf beside it), with the paths rewritten.
        cdir = os.path.join(work, "conf")
        shutil.copytree(src_dir, cdir)
        for name in os.listdir(cdir):
            p = os.path.join(cdir, name)
            if name.endswith((".conf", ".yaml")):
                with open(p) as f:
                    text = rewrite(f.read())
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
        time.sleep(2)  # start-up and the tail input's first scan
        with open(os.path.join(logs, "app.log"), "a") as f:
            f.write(open(os.path.join(golden, "logs.jsonl")).read())
        got = 0
        deadline = time.time() + 20
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
            if kind == "stdout":
                got = len(re.findall(r"^\[\d+\] app\.", open(out_path).read(), re.M))
            else:
                line = receiver.stdout.readline()
                m = re.search(r"stored=(\d+)", line)
                got = int(m.group(1)) if m else got
            if got >= want:
                time.sleep(1.5)  # anything more would show
                if kind == "stdout":
                    got = len(re.findall(r"^\[\d+\] app\.", open(out_path).read(), re.M))
                break
        early_exit = proc.poll() is not None
        proc.terminate()
        try:
            proc.wait(timeout=15)
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
        loaded = "[lockstep_filter] policy " in log
        ok = not errors and loaded and not early_exit and got == want
        print(f"{'ok  ' if ok else 'FAIL'} {rel}: {got} records out, {want} expected"
              f"{'' if loaded else '; the filter did not load the policy'}"
              f"{'; Fluent Bit exited early' if early_exit else ''}")
        for l in errors[:5]:
            print(f"     {l}")
        return ok
    finally:
        if os.environ.get("KEEP"):
            print(f"     kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


results = [check(rel, kind) for rel, kind in CONFIGS]
print("fluent-bit-sampling/fluent-bit.yaml (traces and logs):")
r = subprocess.run([sys.executable, os.path.join(root, "scripts", "fluent-bit-sampling-conf-check.py")],
                   capture_output=True, text=True)
print("     " + "\n     ".join(r.stdout.strip().splitlines()[-4:]))
results.append(r.returncode == 0)
print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
sys.exit(0 if all(results) else 1)
