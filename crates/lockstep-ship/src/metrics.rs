//! Counters of one output instance and their Prometheus text rendering, plus a
//! minimal `/metrics` HTTP listener.
//!
//! Queue figures are not counters kept here: they are read from the spool's gauges
//! (computed from what is on disk) at each scrape, so they stay honest across
//! restarts, crashes and `drop_oldest`.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use lockstep_spool::Gauges;

/// Counters shared by the flush path (intake) and the drain thread.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Records accepted into the spool by flushes.
    pub records_in: AtomicU64,
    /// Chunks accepted (FLB_OK).
    pub chunks_ok: AtomicU64,
    /// Chunks answered FLB_RETRY because the spool was full (`spool_full block`) or the
    /// instance was stopping.
    pub chunks_retry: AtomicU64,
    /// Chunks answered FLB_ERROR (undecodable chunk, record too large for the spool).
    pub chunks_error: AtomicU64,
    /// Invalid UTF-8 replaced while mapping.
    pub invalid_utf8_fixed: AtomicU64,
    /// Label names that had to be sanitised.
    pub label_names_sanitised: AtomicU64,
    /// Label values cut to 2048 bytes.
    pub label_values_truncated: AtomicU64,
    /// Structured-metadata items left out (empty or unrepresentable values).
    pub metadata_dropped: AtomicU64,
    /// Pushes answered 2xx (not 260).
    pub pushes_delivered: AtomicU64,
    /// Pushes answered 260.
    pub pushes_blocked: AtomicU64,
    /// Pushes answered 400/413/422.
    pub pushes_rejected: AtomicU64,
    /// Pushes to retry (429, 5xx, transport failures).
    pub pushes_failed: AtomicU64,
    /// Entries delivered (in pushes answered 2xx).
    pub entries_sent: AtomicU64,
    /// Entries in pushes answered 400/413/422 (a 400 may have stored some of them).
    pub entries_rejected: AtomicU64,
    /// Entries discarded by Loki on purpose (260).
    pub entries_blocked: AtomicU64,
    /// Entries dropped by `too_old drop`.
    pub entries_too_old_dropped: AtomicU64,
    /// Entries whose timestamp was rewritten by `too_old rewrite`.
    pub entries_too_old_rewritten: AtomicU64,
    /// Spool records that could not be decoded (dropped).
    pub entries_undecodable: AtomicU64,
    /// Entries with a tenant that cannot be sent as a header (dropped).
    pub entries_bad_tenant: AtomicU64,
    /// Entries written to the dead-letter file.
    pub dead_lettered: AtomicU64,
    /// Breaker state: 0 closed, 1 open, 2 half-open.
    pub breaker_state: AtomicU64,
    /// Consecutive failed pushes.
    pub consecutive_failures: AtomicU64,
    /// The delay before the next retry, in ms (0 when not retrying).
    pub retry_delay_ms: AtomicU64,
    /// Spool I/O errors met by the drain.
    pub spool_errors: AtomicU64,
}

fn add(s: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, f64)]) {
    let _ = writeln!(s, "# HELP {name} {help}");
    let _ = writeln!(s, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(s, "{name} {v}");
        } else {
            let _ = writeln!(s, "{name}{{{labels}}} {v}");
        }
    }
}

impl Metrics {
    /// Prometheus text exposition (format 0.0.4) of these counters and the spool's
    /// gauges; `instance` becomes a label on every sample.
    pub fn render(&self, instance: &str, g: &Gauges, now_ns: u64) -> String {
        let inst = instance.replace('\\', "\\\\").replace('"', "\\\"");
        let l = |extra: &str| {
            if extra.is_empty() {
                format!("instance=\"{inst}\"")
            } else {
                format!("instance=\"{inst}\",{extra}")
            }
        };
        let r = |a: &AtomicU64| a.load(Relaxed) as f64;
        let mut s = String::with_capacity(4096);
        let base = l("");
        add(
            &mut s,
            "lockstep_loki_queue_records",
            "gauge",
            "Records in the disk queue not yet acknowledged.",
            &[(&base, g.records as f64)],
        );
        add(
            &mut s,
            "lockstep_loki_queue_bytes",
            "gauge",
            "Payload bytes of those records.",
            &[(&base, g.bytes as f64)],
        );
        add(
            &mut s,
            "lockstep_loki_queue_disk_bytes",
            "gauge",
            "Bytes of the queue's segment files.",
            &[(&base, g.disk_bytes as f64)],
        );
        add(
            &mut s,
            "lockstep_loki_queue_oldest_age_seconds",
            "gauge",
            "Time the oldest unacknowledged record has been queued (0 when empty).",
            &[(&base, g.oldest_age(now_ns).map_or(0.0, |d| d.as_secs_f64()))],
        );
        add(
            &mut s,
            "lockstep_loki_queue_dropped_records_total",
            "counter",
            "Records deleted unsent by spool_full drop_oldest.",
            &[(&base, g.dropped_records as f64)],
        );
        add(
            &mut s,
            "lockstep_loki_queue_corrupt_records_total",
            "counter",
            "Corrupt spans skipped in the queue files.",
            &[(&base, g.corrupt_records as f64)],
        );
        add(
            &mut s,
            "lockstep_loki_records_in_total",
            "counter",
            "Records accepted into the queue by flushes.",
            &[(&base, r(&self.records_in))],
        );
        let (ok, retry, err) = (
            l("result=\"ok\""),
            l("result=\"retry\""),
            l("result=\"error\""),
        );
        add(
            &mut s,
            "lockstep_loki_chunks_total",
            "counter",
            "Flushes by what was answered to Fluent Bit.",
            &[
                (&ok, r(&self.chunks_ok)),
                (&retry, r(&self.chunks_retry)),
                (&err, r(&self.chunks_error)),
            ],
        );
        let (d, b, rj, f) = (
            l("outcome=\"delivered\""),
            l("outcome=\"blocked\""),
            l("outcome=\"rejected\""),
            l("outcome=\"failed\""),
        );
        add(
            &mut s,
            "lockstep_loki_pushes_total",
            "counter",
            "Push requests by outcome.",
            &[
                (&d, r(&self.pushes_delivered)),
                (&b, r(&self.pushes_blocked)),
                (&rj, r(&self.pushes_rejected)),
                (&f, r(&self.pushes_failed)),
            ],
        );
        add(
            &mut s,
            "lockstep_loki_entries_sent_total",
            "counter",
            "Entries in pushes Loki answered 2xx.",
            &[(&base, r(&self.entries_sent))],
        );
        let reasons: Vec<(String, &AtomicU64)> = vec![
            (l("reason=\"rejected\""), &self.entries_rejected),
            (l("reason=\"blocked\""), &self.entries_blocked),
            (l("reason=\"too_old\""), &self.entries_too_old_dropped),
            (l("reason=\"undecodable\""), &self.entries_undecodable),
            (l("reason=\"bad_tenant\""), &self.entries_bad_tenant),
        ];
        let samples: Vec<(&str, f64)> = reasons.iter().map(|(k, v)| (k.as_str(), r(v))).collect();
        add(
            &mut s,
            "lockstep_loki_entries_dropped_total",
            "counter",
            "Entries that will not be delivered, by reason (rejected: 400/413/422, blocked: 260).",
            &samples,
        );
        add(
            &mut s,
            "lockstep_loki_entries_rewritten_total",
            "counter",
            "Entries older than too_old_age sent with the timestamp rewritten to the cutoff.",
            &[(&base, r(&self.entries_too_old_rewritten))],
        );
        add(
            &mut s,
            "lockstep_loki_dead_letter_entries_total",
            "counter",
            "Entries written to the dead-letter file.",
            &[(&base, r(&self.dead_lettered))],
        );
        add(
            &mut s,
            "lockstep_loki_invalid_utf8_fixed_total",
            "counter",
            "Strings with invalid UTF-8 replaced while mapping records.",
            &[(&base, r(&self.invalid_utf8_fixed))],
        );
        add(
            &mut s,
            "lockstep_loki_label_names_sanitised_total",
            "counter",
            "Label names rewritten to [a-zA-Z_][a-zA-Z0-9_]*.",
            &[(&base, r(&self.label_names_sanitised))],
        );
        add(
            &mut s,
            "lockstep_loki_label_values_truncated_total",
            "counter",
            "Label values cut to 2048 bytes on a character boundary.",
            &[(&base, r(&self.label_values_truncated))],
        );
        add(
            &mut s,
            "lockstep_loki_metadata_dropped_total",
            "counter",
            "Structured-metadata items left out (empty or unrepresentable values).",
            &[(&base, r(&self.metadata_dropped))],
        );
        add(
            &mut s,
            "lockstep_loki_breaker_state",
            "gauge",
            "Circuit breaker: 0 closed, 1 open, 2 half-open.",
            &[(&base, r(&self.breaker_state))],
        );
        add(
            &mut s,
            "lockstep_loki_consecutive_failures",
            "gauge",
            "Consecutive failed pushes.",
            &[(&base, r(&self.consecutive_failures))],
        );
        add(
            &mut s,
            "lockstep_loki_retry_delay_seconds",
            "gauge",
            "Delay before the next retry (0 when not retrying).",
            &[(&base, r(&self.retry_delay_ms) / 1000.0)],
        );
        add(
            &mut s,
            "lockstep_loki_spool_errors_total",
            "counter",
            "Queue I/O errors met by the drain.",
            &[(&base, r(&self.spool_errors))],
        );
        s
    }
}

/// A running `/metrics` listener. Dropping it stops the thread.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Parses `metrics_listen`: `PORT` (bound on 127.0.0.1) or `HOST:PORT`.
pub fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    let v = value.trim();
    if let Ok(port) = v.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    v.parse::<SocketAddr>()
        .map_err(|e| format!("metrics_listen `{value}`: want PORT or HOST:PORT ({e})"))
}

impl MetricsServer {
    /// Binds `addr` and serves `GET /metrics` with what `render` returns.
    pub fn start(
        addr: SocketAddr,
        name: String,
        render: impl Fn() -> String + Send + 'static,
    ) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            while !stop2.load(Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => serve(conn, &render),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    Err(e) => {
                        log::warn!("metrics listener on {addr}: {e}");
                        std::thread::sleep(Duration::from_millis(200))
                    }
                }
            }
        })?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers one connection: reads the request head (at most 8 KiB, 2 s), answers
/// `/metrics` with the rendering and anything else with 404, then closes.
fn serve(mut conn: TcpStream, render: &dyn Fn() -> String) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    // One slow client must not hold the listener (and the instance's exit): 2 s in all.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let path = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        let _ = conn.set_read_timeout(Some(left));
        match conn.read(&mut buf[n..]) {
            Ok(0) | Err(_) => return,
            Ok(k) => n += k,
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..n]) {
            Ok(httparse::Status::Complete(_)) => {
                break (
                    req.method == Some("GET"),
                    req.path.unwrap_or("").to_string(),
                )
            }
            Ok(httparse::Status::Partial) if n < buf.len() => continue,
            _ => {
                let _ = conn.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return;
            }
        }
    };
    let (is_get, p) = path;
    let resp = if is_get && (p == "/metrics" || p.starts_with("/metrics?")) {
        let body = render();
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    };
    let _ = conn.write_all(resp.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("2021").unwrap(),
            "127.0.0.1:2021".parse().unwrap()
        );
        assert_eq!(
            parse_listen("0.0.0.0:9").unwrap(),
            "0.0.0.0:9".parse().unwrap()
        );
        assert!(parse_listen("localhost")
            .unwrap_err()
            .contains("metrics_listen"));
    }

    #[test]
    fn render_reads_gauges_and_counters() {
        let m = Metrics::default();
        m.entries_sent.store(41, Relaxed);
        m.entries_too_old_dropped.store(3, Relaxed);
        let g = Gauges {
            records: 7,
            oldest_ts_ns: Some(1_000_000_000),
            ..Default::default()
        };
        let text = m.render("lockstep_loki.0", &g, 11_000_000_000);
        assert!(
            text.contains("lockstep_loki_queue_records{instance=\"lockstep_loki.0\"} 7\n"),
            "{text}"
        );
        assert!(text
            .contains("lockstep_loki_queue_oldest_age_seconds{instance=\"lockstep_loki.0\"} 10\n"));
        assert!(
            text.contains("lockstep_loki_entries_sent_total{instance=\"lockstep_loki.0\"} 41\n")
        );
        assert!(text.contains("lockstep_loki_entries_dropped_total{instance=\"lockstep_loki.0\",reason=\"too_old\"} 3\n"));
    }

    /// Every metric the README documents is rendered (two once were counted by the
    /// mapping and never exported).
    #[test]
    fn every_documented_metric_is_rendered() {
        let readme = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
        )
        .unwrap();
        let start = readme.find("### Metrics (`metrics_listen`)").unwrap();
        let section = &readme[start..];
        let section = &section[..section.find("alerts.yaml").unwrap()];
        let names: Vec<String> = section
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|t| t.starts_with("lockstep_loki_") || t.starts_with('_'))
            .map(|t| {
                let t = t.split('{').next().unwrap();
                if t.starts_with('_') {
                    format!("lockstep_loki{t}")
                } else {
                    t.to_string()
                }
            })
            .collect();
        assert!(names.len() >= 20, "{names:?}");
        let m = Metrics::default();
        m.label_values_truncated.store(5, Relaxed);
        m.metadata_dropped.store(6, Relaxed);
        let text = m.render("i", &Gauges::default(), 0);
        for name in &names {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} is not rendered"
            );
        }
        assert!(text.contains("lockstep_loki_label_values_truncated_total{instance=\"i\"} 5\n"));
        assert!(text.contains("lockstep_loki_metadata_dropped_total{instance=\"i\"} 6\n"));
    }

    #[test]
    fn serves_metrics_over_http() {
        let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), "m".into(), || {
            "x 1\n".into()
        })
        .unwrap();
        let get = |path: &str| {
            let mut c = TcpStream::connect(srv.addr()).unwrap();
            write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s).unwrap();
            s
        };
        let ok = get("/metrics");
        assert!(
            ok.starts_with("HTTP/1.1 200") && ok.ends_with("\r\n\r\nx 1\n"),
            "{ok}"
        );
        assert!(get("/other").starts_with("HTTP/1.1 404"));
    }
}
