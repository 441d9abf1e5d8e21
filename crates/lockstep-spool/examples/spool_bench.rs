//! The issue's workload, measured end to end: durable appends of `--batch` records of
//! `--size` bytes, from `--threads` appender threads (group commit shares fsyncs between
//! them), then a drain with peek + ack. Prints records/s, append latency percentiles and
//! disk bytes per record.
//!
//! ```text
//! cargo run --release -p lockstep-spool --example spool_bench -- \
//!     [--batches 2000] [--batch 1000] [--size 200] [--threads 1] [--sync always|<ms>] \
//!     [--dir PATH] [--keep]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use lockstep_spool::{FullPolicy, Spool, SpoolConfig, SyncMode};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let batches: usize = arg(&args, "--batches", 2000);
    let per: usize = arg(&args, "--batch", 1000);
    let size: usize = arg(&args, "--size", 200);
    let threads: usize = arg(&args, "--threads", 1).max(1);
    let sync_arg: String = arg(&args, "--sync", "always".to_string());
    let keep = args.iter().any(|a| a == "--keep");
    let sync = match sync_arg.as_str() {
        "always" => SyncMode::Always,
        ms => SyncMode::Interval(Duration::from_millis(
            ms.parse().expect("--sync always|<ms>"),
        )),
    };
    let mut tmp = None;
    let dir = match args.iter().position(|a| a == "--dir") {
        Some(i) => std::path::PathBuf::from(&args[i + 1]),
        None => {
            // On the disk being measured (not a tmpfs): the current directory by default.
            let t = tempfile::Builder::new()
                .prefix("spool-bench")
                .tempdir_in(std::env::var("BENCH_TMP").unwrap_or_else(|_| ".".into()))
                .unwrap();
            let d = t.path().join("spool");
            tmp = Some(t);
            d
        }
    };
    let total_bytes = (batches * per * (size + 24)) as u64;
    let cfg = SpoolConfig {
        max_bytes: (total_bytes * 2).max(1 << 30),
        full_policy: FullPolicy::Block,
        sync,
        ..SpoolConfig::default()
    };
    let spool = Arc::new(Spool::open(&dir, cfg).unwrap());

    // Distinct payloads (not all-equal pages).
    let batch: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..per)
            .map(|i| {
                let mut v = format!("{{\"ts\":{i},\"level\":\"info\",\"msg\":\"").into_bytes();
                v.resize(size, b'a' + (i % 26) as u8);
                v
            })
            .collect(),
    );
    let t0 = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let spool = spool.clone();
            let batch = batch.clone();
            let n = batches / threads + usize::from(t < batches % threads);
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(n);
                for _ in 0..n {
                    let s = Instant::now();
                    spool.append(&batch).unwrap();
                    lat.push(s.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    spool.sync().unwrap();
    let append_secs = t0.elapsed().as_secs_f64();
    lat.sort();
    let g = spool.gauges();
    let records = (batches * per) as f64;
    println!(
        "workload: {batches} batches x {per} records x {size} B, {threads} appender thread(s), sync {sync_arg}"
    );
    println!(
        "append:   {:.0} records/s, {:.1} MB/s payload; latency per batch p50 {:.2?} p99 {:.2?} max {:.2?}",
        records / append_secs,
        records * size as f64 / append_secs / 1e6,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or_default()
    );
    println!(
        "disk:     {} bytes in {} segments = {:.2} bytes/record for {size}-byte payloads",
        g.disk_bytes,
        g.segments,
        g.disk_bytes as f64 / records
    );

    let t1 = Instant::now();
    let mut drained = 0usize;
    loop {
        let b = spool.peek(per, 1 << 20).unwrap();
        if b.is_empty() {
            break;
        }
        drained += b.len();
        spool.ack(&b).unwrap();
    }
    let drain_secs = t1.elapsed().as_secs_f64();
    assert_eq!(drained, batches * per);
    let g2 = spool.gauges();
    println!(
        "drain:    {:.0} records/s (peek up to {per} records / 1 MiB + ack with checkpoint fsync); after: {} records, {} bytes on disk",
        drained as f64 / drain_secs,
        g2.records,
        g2.disk_bytes
    );
    drop(spool);
    if keep {
        if let Some(t) = tmp {
            let _ = t.keep();
        }
        eprintln!("kept {}", dir.display());
    }
}
