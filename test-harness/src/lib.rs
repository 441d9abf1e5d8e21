//! lockstep-harness: test-only helpers around the hosts of `lockstep-hosts`, and the
//! integration tests (`tests/`) that run the real plugin artifacts in them.
//!
//! Modules:
//! - [`artifacts`]: builds plugin artifacts (the output `cdylib`s, the filter `.wasm`)
//!   from the workspace so tests load exactly what ships.
//! - this file: child processes (spawn, read, kill on drop), polling, a free port,
//!   metrics scrapes, chunks and stored fields for assertions.
//!
//! Nothing of the product depends on this crate: it is a dev-dependency only.

pub mod artifacts;

pub use lockstep_hosts::free_port;
use lockstep_hosts::{loki_receiver, proxy};

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process that is killed (SIGKILL) and reaped when dropped, so a failed
/// assertion or a panicking benchmark never leaves one running.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// `kill -9`, and wait until it is gone.
    pub fn kill9(&mut self) {
        self.0.kill().expect("kill the child");
        self.0.wait().expect("reap the child");
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `f` every 10 ms until it holds or `timeout` passes; whether it held (checked
/// once more at the end). For tests waiting on another thread or process.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// Re-runs the current test binary as a child process that runs only the `#[ignore]`d
/// test `test_name`, with `env_key=spec` in its environment (the kill -9 tests' child
/// hosts). Its stdout is piped back; its stderr is dropped.
pub fn spawn_test_child(
    test_name: &str,
    env_key: &str,
    spec: &str,
) -> (KillOnDrop, BufReader<ChildStdout>) {
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            test_name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(env_key, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child test");
    let out = BufReader::new(child.stdout.take().expect("piped stdout"));
    (KillOnDrop(child), out)
}

/// Reads a child's lines until one satisfies `want`; returns every line read (libtest's
/// "test NAME ... " prefix removed). Panics if the child ends first.
pub fn read_until(
    out: &mut BufReader<ChildStdout>,
    test_name: &str,
    want: impl Fn(&str) -> bool,
) -> Vec<String> {
    let prefix = format!("test {test_name} ... ");
    let mut seen = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).expect("read the child's stdout") == 0 {
            panic!("child ended early after {seen:?}");
        }
        // libtest prints "test NAME ... " without a newline before the child runs.
        let l = line.trim().trim_start_matches(prefix.as_str()).to_string();
        let done = want(&l);
        seen.push(l);
        if done {
            return seen;
        }
    }
}

/// `GET /metrics` on 127.0.0.1:`port` (an output's `metrics_listen`): the whole answer.
pub fn scrape_metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics listener");
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("metrics request");
    let mut s = String::new();
    let _ = c.read_to_string(&mut s);
    s
}

/// A chunk of V2 events with these bodies, stamped five seconds ago, a microsecond apart.
pub fn chunk_of(records: &[proxy::rmpv::Value]) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut b = proxy::ChunkBuilder::new();
    for (k, r) in records.iter().enumerate() {
        b = b.record(
            now.as_secs() as u32 - 5,
            (k as u32) * 1000,
            proxy::rmpv::Value::Map(vec![]),
            r.clone(),
        );
    }
    b.build()
}

/// The `field` of every JSON line the receiver stored for the default tenant, sorted.
pub fn stored_field(rx: &loki_receiver::LokiReceiver, field: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (_, entries) in rx.entries("fake") {
        for e in entries {
            let v: serde_json::Value = serde_json::from_str(&e.line).unwrap_or_default();
            out.push(v[field].as_str().unwrap_or_default().to_string());
        }
    }
    out.sort();
    out
}

/// The value of the sample of `name` whose labels after `instance` are exactly `labels`
/// (`""`, or `,k="v",…`), from a `/metrics` text; panics naming what is missing.
pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .find(|l| {
            l.strip_prefix(&format!("{name}{{instance=\""))
                .and_then(|rest| rest.split_once('"'))
                .is_some_and(|(_, rest)| rest.starts_with(&format!("{labels}}} ")))
        })
        .and_then(|l| l.rsplit_once(' '))
        .unwrap_or_else(|| panic!("{name}{{..{labels}}} not in\n{text}"))
        .1
        .parse()
        .expect("a sample's value")
}

/// True when the OpenTelemetry Python SDK imports these modules (`import` is the Python
/// statement's list, e.g. `opentelemetry.sdk._logs, opentelemetry.exporter…`): the
/// tests that send with a real OTLP client say "skipped" and pass without it, unless
/// `LOCKSTEP_REQUIRE_OTEL` is set (CI), which makes that a failure.
pub fn have_otel(modules: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("LOCKSTEP_REQUIRE_OTEL").is_err(),
            "LOCKSTEP_REQUIRE_OTEL is set but the OpenTelemetry Python SDK does not import \
             (pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http)"
        );
        eprintln!("skipped: the OpenTelemetry Python SDK is not installed");
    }
    ok
}
