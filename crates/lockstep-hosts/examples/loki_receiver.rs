//! A stand-alone Loki-compatible receiver for benchmarking real Fluent Bit outputs
//! (`scripts/bench-fluent-bit.sh`). It runs [`LokiReceiver`] with default settings
//! (random loopback port, exact duplicates dropped and counted), prints its push URL
//! on the first stdout line, then once a second a status line:
//!
//! ```text
//! http://127.0.0.1:PORT/loki/api/v1/push
//! stored=<entries_stored> requests=<requests> duplicates=<duplicates_dropped> rejected=<n> discarded=<n> statuses=<code:count,...>
//! ```
//!
//! It stops (after one last status line) on SIGTERM/SIGINT or when stdin reaches EOF.
//! `LOKI_RECEIVER_INTERVAL_MS` sets the status interval (default 1000 ms). With
//! `LOKI_RECEIVER_DUMP=<path>` it writes every stored entry at exit, one JSON object a
//! line: `{"tenant","labels":{..},"ts_ns","line","structured_metadata":[[k,v],..]}`.
//! With `LOKI_RECEIVER_SLOW_MS=<ms>` every push is answered (and stored) that long after
//! it arrived, even when the client gave up first: a healthy but slow Loki, for
//! shutdown drills (`scripts/drill-sigterm.sh`).
//!
//! ```text
//! cargo build --release -p lockstep-hosts --example loki_receiver
//! ```

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lockstep_hosts::loki_receiver::{LokiReceiver, ReceiverConfig, Stats};

fn status_line(s: &Stats) -> String {
    let statuses: Vec<String> = s
        .by_status
        .iter()
        .map(|(code, n)| format!("{code}:{n}"))
        .collect();
    format!(
        "stored={} requests={} duplicates={} rejected={} discarded={} statuses={}",
        s.entries_stored,
        s.requests,
        s.duplicates_dropped,
        s.entries_rejected,
        s.entries_discarded,
        statuses.join(",")
    )
}

fn main() {
    // SIGTERM/SIGINT set the flag (signal-hook's handler only stores to it).
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).expect("a signal handler");
    }

    let receiver = LokiReceiver::start_with(ReceiverConfig::default());
    if let Some(ms) = std::env::var("LOKI_RECEIVER_SLOW_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        receiver.set_mode(lockstep_hosts::loki_receiver::Mode::Slow(
            Duration::from_millis(ms),
        ));
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", receiver.url());
    let _ = out.flush();

    let stdin_closed = Arc::new(AtomicBool::new(false));
    {
        let closed = Arc::clone(&stdin_closed);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut stdin = std::io::stdin();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            closed.store(true, Ordering::SeqCst);
        });
    }

    let interval = Duration::from_millis(
        std::env::var("LOKI_RECEIVER_INTERVAL_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&ms| ms > 0)
            .unwrap_or(1000),
    );
    let mut next = Instant::now() + interval;
    loop {
        if stop.load(Ordering::SeqCst) || stdin_closed.load(Ordering::SeqCst) {
            break;
        }
        let now = Instant::now();
        if now >= next {
            let _ = writeln!(out, "{}", status_line(&receiver.stats()));
            let _ = out.flush();
            next += interval;
            if next < now {
                next = now + interval;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = writeln!(out, "{}", status_line(&receiver.stats()));
    let _ = out.flush();
    if let Some(path) = std::env::var_os("LOKI_RECEIVER_DUMP") {
        if let Err(e) = dump(&receiver, std::path::Path::new(&path)) {
            eprintln!("loki_receiver: dump to {}: {e}", path.to_string_lossy());
        }
    }
    drop(receiver);
}

fn dump(receiver: &LokiReceiver, path: &std::path::Path) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for tenant in receiver.tenants() {
        for (labels, entries) in receiver.entries(&tenant) {
            for e in entries {
                let v = serde_json::json!({
                    "tenant": tenant,
                    "labels": labels,
                    "ts_ns": e.ts_ns.to_string(),
                    "line": e.line,
                    "structured_metadata": e.structured_metadata,
                });
                serde_json::to_writer(&mut w, &v)?;
                w.write_all(b"\n")?;
            }
        }
    }
    w.flush()
}
