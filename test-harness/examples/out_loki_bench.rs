//! End-to-end benchmark of `lockstep_out_loki.so` in the proxy host (release build):
//! records/s and CPU per record from Flush into the spool, and from the spool into a
//! Loki-compatible receiver running in another process; RSS at steady state and while
//! draining a large backlog. Each phase runs in a fresh process so peak RSS (VmHWM) is
//! its own.
//!
//! ```text
//! scripts/build-plugins.sh
//! cargo run --release -p lockstep-harness --example out_loki_bench -- [SO] [RECORDS]
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lockstep_harness::{free_port, KillOnDrop};
use lockstep_hosts::loki_receiver::{LokiReceiver, ReceiverConfig};
use lockstep_hosts::proxy::rmpv::Value;
use lockstep_hosts::proxy::{ChunkBuilder, FlushCode, HostOptions, ProxyHost};

fn cpu_s() -> f64 {
    // utime + stime of this process, from /proc/self/stat (fields 14, 15; clock ticks).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // after ')' the fields start at 3 (state): utime is field 14 → index 11.
    (ticks(11) + ticks(12)) / 100.0
}

fn status_kb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key).map(|r| {
                r.trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse()
                    .unwrap_or(0.0)
            })
        })
        .unwrap_or(0.0)
}

/// One record like the golden set's: ~200 bytes of JSON once rendered.
fn body(i: u64) -> Value {
    Value::Map(vec![
        ("time".into(), "2026-11-22T10:00:00.123Z".into()),
        (
            "level".into(),
            ["info", "error", "debug", "warn"][(i % 4) as usize].into(),
        ),
        (
            "app".into(),
            ["api", "billing", "ledger", "web"][(i % 4) as usize].into(),
        ),
        (
            "msg".into(),
            format!("request served {i} GET /api/v1/orders").into(),
        ),
        (
            "trace_id".into(),
            format!("{:032x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).into(),
        ),
        ("span_id".into(), format!("{:016x}", i).into()),
        ("duration_ms".into(), Value::from((i % 400) as f64 + 0.5)),
    ])
}

fn chunk(from: u64, n: u64) -> Vec<u8> {
    let now = lockstep_spool::now_ns() / 1_000_000_000;
    let mut b = ChunkBuilder::new();
    for i in from..from + n {
        b = b.record(
            now as u32,
            (i % 1_000_000_000) as u32,
            Value::Map(vec![]),
            body(i),
        );
    }
    b.build()
}

/// The plugin in the proxy host, with its metrics on `metrics_port`: the phases poll
/// `lockstep_loki_queue_records` there (the plugin's in-memory gauge; reading the spool
/// from disk each poll would add its own CPU to the figures).
fn host(so: &str, url: &str, spool: &str, sync: &str, metrics_port: u16) -> ProxyHost {
    let mut h = ProxyHost::load(so, HostOptions::default()).expect("load the plugin");
    let port = metrics_port.to_string();
    h.add_output(
        "lockstep_loki",
        &[
            ("url", url),
            ("metrics_listen", &port),
            ("spool_dir", spool),
            ("spool_sync", sync),
            ("spool_max_bytes", "4G"),
            ("labels", "job=bench, app=$app"),
            (
                "structured_metadata",
                "trace_id=$trace_id, span_id=$span_id",
            ),
            ("line_format", "json"),
            ("linger", "1s"),
            ("retry_initial", "100ms"),
            ("breaker_failures", "3"),
            ("breaker_hold", "60s"),
        ],
    )
    .unwrap();
    h.start().expect("start");
    h
}

/// `lockstep_loki_queue_records` from the plugin's metrics listener.
fn queued(port: u16) -> u64 {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("metrics listener");
    write!(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    text.lines()
        .find(|l| l.starts_with("lockstep_loki_queue_records{"))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no queue_records in\n{text}"))
}

/// Runs one phase in a fresh process; its four figures.
fn phase(
    exe: &Path,
    mode: &str,
    so: &str,
    url: &str,
    spool: &Path,
    n: u64,
    sync: &str,
) -> Vec<f64> {
    let out = Command::new(exe)
        .args([mode, so, url, spool.to_str().unwrap(), &n.to_string()])
        .env("LOCKSTEP_BENCH_SYNC", sync)
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        panic!("{mode} failed");
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--receiver") => return receiver(),
        Some("--intake") => return intake(&args[2], &args[3], &args[4], args[5].parse().unwrap()),
        Some("--drain") => return drain(&args[2], &args[3], &args[4], args[5].parse().unwrap()),
        Some("--steady") => return steady(&args[2], &args[3], &args[4], args[5].parse().unwrap()),
        _ => {}
    }
    let so = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "dist/lockstep_out_loki.so".into());
    let n: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let so = std::fs::canonicalize(&so)
        .unwrap_or_else(|e| panic!("{so}: {e} (run scripts/build-plugins.sh)"));
    let so = so.to_str().unwrap().to_string();
    let exe = std::env::current_exe().unwrap();
    // Killed however the benchmark ends.
    let mut rx = KillOnDrop(
        Command::new(&exe)
            .arg("--receiver")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut rx_out = BufReader::new(rx.0.stdout.take().unwrap());
    let mut url = String::new();
    rx_out.read_line(&mut url).unwrap();
    let url = url.trim().to_string();
    let size = std::fs::metadata(&so).map(|m| m.len()).unwrap_or(0);
    println!(
        "plugin {so}: {:.2} MB; {n} records of ~200 bytes, chunks of 1000",
        size as f64 / 1e6
    );
    println!(
        "{:<44} {:>12} {:>14} {:>10} {:>10}",
        "phase", "records/s", "CPU µs/record", "RSS MB", "peak MB"
    );
    let tmp = std::env::temp_dir().join(format!("lockstep-out-bench-{}", std::process::id()));
    for sync in ["always", "200ms"] {
        let spool = tmp.join(format!("q-{sync}"));
        let _ = std::fs::remove_dir_all(&spool);
        let run = |mode: &str, url: &str, label: String| {
            let v = phase(&exe, mode, &so, url, &spool, n, sync);
            println!(
                "{label:<44} {:>12.0} {:>14.2} {:>10.1} {:>10.1}",
                v[0], v[1], v[2], v[3]
            );
        };
        // Intake with Loki unreachable (the drain's breaker is open): Flush → spool only.
        run(
            "--intake",
            "http://127.0.0.1:9/loki/api/v1/push",
            format!("flush → spool (sync {sync})"),
        );
        // Then drain that backlog into the receiver (another process).
        run(
            "--drain",
            &url,
            format!("spool → receiver, {n} backlog (sync {sync})"),
        );
    }
    let spool = tmp.join("q-steady");
    let v = phase(&exe, "--steady", &so, &url, &spool, n, "always");
    println!(
        "{:<44} {:>12.0} {:>14.2} {:>10.1} {:>10.1}",
        "steady 20k rec/s, Loki up (sync always)", v[0], v[1], v[2], v[3]
    );
    drop(rx);
    let _ = std::fs::remove_dir_all(&tmp);
}

fn receiver() {
    let rx = LokiReceiver::start_with(ReceiverConfig {
        drop_duplicates: false,
        max_behind: None,
        ..ReceiverConfig::default()
    });
    println!("{}", rx.url());
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn sync() -> String {
    std::env::var("LOCKSTEP_BENCH_SYNC").unwrap_or_else(|_| "always".into())
}

fn intake(so: &str, url: &str, spool: &str, n: u64) {
    let mut h = host(so, url, spool, &sync(), free_port());
    let chunks: Vec<Vec<u8>> = (0..n / 1000).map(|c| chunk(c * 1000, 1000)).collect();
    let (c0, t0) = (cpu_s(), Instant::now());
    for c in &chunks {
        assert_eq!(h.flush(0, "bench", c).unwrap().code, FlushCode::Ok);
    }
    let (cpu, wall) = (cpu_s() - c0, t0.elapsed().as_secs_f64());
    let rss = status_kb("VmRSS:") / 1024.0;
    h.shutdown(false);
    println!(
        "{} {} {} {}",
        n as f64 / wall,
        cpu * 1e6 / n as f64,
        rss,
        status_kb("VmHWM:") / 1024.0
    );
}

fn drain(so: &str, url: &str, spool: &str, n: u64) {
    let (c0, t0) = (cpu_s(), Instant::now());
    let port = free_port();
    let mut h = host(so, url, spool, &sync(), port);
    let mut rss_max: f64 = 0.0;
    loop {
        rss_max = rss_max.max(status_kb("VmRSS:"));
        let left = queued(port);
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "drain stalled at {left} records"
        );
    }
    let (cpu, wall) = (cpu_s() - c0, t0.elapsed().as_secs_f64());
    h.shutdown(false);
    println!(
        "{} {} {} {}",
        n as f64 / wall,
        cpu * 1e6 / n as f64,
        rss_max / 1024.0,
        status_kb("VmHWM:") / 1024.0
    );
}

/// Loki up, records arriving at a fixed 20k/s for the run: CPU per record and RSS.
fn steady(so: &str, url: &str, spool: &str, n: u64) {
    let port = free_port();
    let mut h = host(so, url, spool, &sync(), port);
    let per_tick = 2000u64; // every 100 ms
    let chunks: Vec<Vec<u8>> = (0..per_tick / 1000)
        .map(|c| chunk(c * 1000, 1000))
        .collect();
    let ticks = (n / per_tick).max(10);
    let (c0, t0) = (cpu_s(), Instant::now());
    for t in 0..ticks {
        for c in &chunks {
            assert_eq!(h.flush(0, "bench", c).unwrap().code, FlushCode::Ok);
        }
        let next = t0 + Duration::from_millis(100 * (t + 1));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    while queued(port) > 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let total = ticks * per_tick;
    let (cpu, wall) = (cpu_s() - c0, t0.elapsed().as_secs_f64());
    let rss = status_kb("VmRSS:") / 1024.0;
    h.shutdown(false);
    println!(
        "{} {} {} {}",
        total as f64 / wall,
        cpu * 1e6 / total as f64,
        rss,
        status_kb("VmHWM:") / 1024.0
    );
}
