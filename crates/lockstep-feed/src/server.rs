//! The OTLP/HTTP receiver: [`respond`] decides an answer (pure), [`FeedServer`] speaks
//! HTTP/1.1 around it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::decode::{decode_body, Compression, DecodeError, Encoding, Limits, Report};

/// Settings of the receiver.
#[derive(Clone)]
pub struct FeedConfig {
    /// The path exports are posted to (OTLP's default: `/v1/traces`).
    pub path: String,
    /// When set, requests must carry `Authorization: Bearer <token>` (401 otherwise).
    pub bearer_token: Option<String>,
    pub limits: Limits,
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// An idle keep-alive connection is closed after this (above the Collector's 90 s).
    pub idle_timeout: Duration,
    /// Once a request has started, the rest of it must arrive within this.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for FeedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedConfig")
            .field("path", &self.path)
            // Never logged.
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("limits", &self.limits)
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            path: "/v1/traces".into(),
            bearer_token: None,
            limits: Limits {
                max_body_bytes: 16 << 20,
            },
            max_connections: 32,
            idle_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the sink could not take a report now: answered 503 with `Retry-After` (every
/// real sender retries it).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// What the receiver saw, for the output's `/metrics`.
#[derive(Debug, Default)]
pub struct FeedMetrics {
    requests: Mutex<BTreeMap<u16, u64>>,
    pub spans: AtomicU64,
    pub trace_ids: AtomicU64,
    pub invalid_ids: AtomicU64,
    /// When the last request with a decodable body arrived (ns since the epoch, 0: never).
    pub last_report_ns: AtomicU64,
}

impl FeedMetrics {
    /// Requests by HTTP status answered, sorted.
    pub fn requests(&self) -> Vec<(u16, u64)> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }
    fn count(&self, status: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(status)
            .or_insert(0) += 1;
    }
}

/// The request head, as [`respond`] needs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub authorization: Option<&'a str>,
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub retry_after: Option<u32>,
}

const PROTO: &str = "application/x-protobuf";
const JSON: &str = "application/json";

fn encoding_of(content_type: Option<&str>) -> Option<Encoding> {
    let media = content_type?.split(';').next()?.trim().to_ascii_lowercase();
    match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
        "application/json" => Some(Encoding::Json),
        _ => None,
    }
}

/// A `google.rpc.Status` in the given encoding (message cut to keep the whole answer
/// well under Fluent Bit's 4 KiB).
fn status_body(enc: Encoding, code: u32, message: &str) -> (&'static str, Vec<u8>) {
    let mut msg = message.to_string();
    if msg.len() > 512 {
        let mut cut = 512;
        while !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        msg.truncate(cut);
    }
    match enc {
        Encoding::Json => (
            JSON,
            serde_json::json!({"code": code, "message": msg})
                .to_string()
                .into_bytes(),
        ),
        Encoding::Protobuf => {
            let mut b = vec![0x08];
            let mut v = code;
            while v >= 0x80 {
                b.push((v as u8) | 0x80);
                v >>= 7;
            }
            b.push(v as u8);
            b.push(0x12);
            let mut n = msg.len();
            while n >= 0x80 {
                b.push((n as u8) | 0x80);
                n >>= 7;
            }
            b.push(n as u8);
            b.extend_from_slice(msg.as_bytes());
            (PROTO, b)
        }
    }
}

fn error(enc: Encoding, status: u16, message: &str) -> Response {
    // gRPC codes, as google.rpc.Status carries them.
    let code = match status {
        400 | 411 | 415 => 3, // INVALID_ARGUMENT
        401 => 16,            // UNAUTHENTICATED
        404 => 5,             // NOT_FOUND
        405 => 12,            // UNIMPLEMENTED
        413 => 8,             // RESOURCE_EXHAUSTED
        _ => 14,              // UNAVAILABLE
    };
    let (content_type, body) = status_body(enc, code, message);
    Response {
        status,
        content_type,
        body,
        retry_after: (status == 503).then_some(1),
    }
}

/// The answer to one request: checks the path, method, token, media type and encoding,
/// decodes the body and hands its ids to `sink`; 200 only once the sink took them.
pub fn respond(
    cfg: &FeedConfig,
    req: &Request<'_>,
    body: &[u8],
    sink: &dyn Fn(&Report) -> Result<(), SinkError>,
    metrics: &FeedMetrics,
) -> Response {
    let r = respond_inner(cfg, req, body, sink, metrics);
    metrics.count(r.status);
    r
}

fn respond_inner(
    cfg: &FeedConfig,
    req: &Request<'_>,
    body: &[u8],
    sink: &dyn Fn(&Report) -> Result<(), SinkError>,
    metrics: &FeedMetrics,
) -> Response {
    let enc = encoding_of(req.content_type);
    let answer_as = enc.unwrap_or(Encoding::Protobuf);
    let path = req.path.split('?').next().unwrap_or("");
    if path != cfg.path {
        return error(
            answer_as,
            404,
            &format!("no such path: the decision feed takes POST {}", cfg.path),
        );
    }
    if req.method != "POST" {
        return error(answer_as, 405, "the decision feed takes POST");
    }
    if let Some(token) = &cfg.bearer_token {
        let given = req.authorization.and_then(|a| {
            a.strip_prefix("Bearer ")
                .or_else(|| a.strip_prefix("bearer "))
        });
        if !given.is_some_and(|g| constant_time_eq(g.trim().as_bytes(), token.as_bytes())) {
            return error(answer_as, 401, "missing or wrong bearer token");
        }
    }
    let Some(enc) = enc else {
        return error(
            answer_as,
            415,
            &format!(
                "unsupported Content-Type {:?}: use application/x-protobuf or application/json",
                req.content_type.unwrap_or("")
            ),
        );
    };
    let compression = match req
        .content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => Compression::None,
        Some("gzip") | Some("x-gzip") => Compression::Gzip,
        Some("deflate") => Compression::Deflate,
        Some(other) => {
            return error(
                enc,
                400,
                &format!("unsupported Content-Encoding {other:?}: use gzip, deflate or none"),
            )
        }
    };
    let report = match decode_body(body, enc, compression, &cfg.limits) {
        Ok(r) => r,
        Err(e @ DecodeError::TooLarge { .. }) => return error(enc, 413, &e.to_string()),
        Err(e) => return error(enc, 400, &e.to_string()),
    };
    metrics.spans.fetch_add(report.spans, Relaxed);
    metrics.invalid_ids.fetch_add(report.invalid_ids, Relaxed);
    if let Err(e) = sink(&report) {
        return error(
            enc,
            503,
            &format!("the decisions cannot be recorded now: {e}"),
        );
    }
    metrics
        .trace_ids
        .fetch_add(report.trace_ids.len() as u64, Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    metrics.last_report_ns.store(now, Relaxed);
    // An empty ExportTraceServiceResponse: 0 bytes in protobuf, `{}` in JSON.
    let (content_type, body) = match enc {
        Encoding::Protobuf => (PROTO, Vec::new()),
        Encoding::Json => (JSON, b"{}".to_vec()),
    };
    Response {
        status: 200,
        content_type,
        body,
        retry_after: None,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type Sink = Arc<dyn Fn(&Report) -> Result<(), SinkError> + Send + Sync>;

/// A running receiver. Dropping it (or [`FeedServer::stop`]) stops accepting, ends every
/// connection after the request it is serving, and joins every thread it started.
pub struct FeedServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    cfg: FeedConfig,
    sink: Sink,
    metrics: Arc<FeedMetrics>,
    stop: Arc<AtomicBool>,
    active: AtomicUsize,
}

impl FeedServer {
    /// Binds `addr` and serves the feed on threads named after `name`.
    pub fn start(
        addr: SocketAddr,
        name: String,
        cfg: FeedConfig,
        metrics: Arc<FeedMetrics>,
        sink: Sink,
    ) -> std::io::Result<FeedServer> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let sh = Arc::new(Shared {
            cfg,
            sink,
            metrics,
            stop: stop.clone(),
            active: AtomicUsize::new(0),
        });
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || accept_loop(listener, sh, name))?;
        Ok(FeedServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops and joins every thread. Idempotent.
    pub fn stop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FeedServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, sh: Arc<Shared>, name: String) {
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !sh.stop.load(Relaxed) {
        conns.retain(|h| !h.is_finished());
        match listener.accept() {
            Ok((mut conn, _)) => {
                if sh.active.load(Relaxed) >= sh.cfg.max_connections {
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
                    let r = error(Encoding::Protobuf, 503, "too many connections");
                    sh.metrics.count(503);
                    let _ = write_response(&mut conn, &r, true);
                    continue;
                }
                sh.active.fetch_add(1, Relaxed);
                let s = sh.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("{name}.conn"))
                    .spawn(move || {
                        // A bug ends this connection only.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            serve(conn, &s)
                        }));
                        s.active.fetch_sub(1, Relaxed);
                    });
                match spawned {
                    Ok(h) => conns.push(h),
                    Err(e) => {
                        sh.active.fetch_sub(1, Relaxed);
                        log::warn!("decision feed: cannot start a connection thread: {e}");
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => {
                log::warn!("decision feed listener: {e}");
                std::thread::sleep(Duration::from_millis(200))
            }
        }
    }
    for h in conns {
        let _ = h.join();
    }
}

/// Reads into `buf` until `done(buf)` says how much is needed is there, the deadline
/// passes, the peer closes or the server stops. Short read timeouts let a stop be
/// noticed within half a second.
fn fill(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
    want: usize,
    deadline: Instant,
    stop: &AtomicBool,
) -> bool {
    let mut chunk = [0u8; 16 << 10];
    while buf.len() < want {
        if stop.load(Relaxed) || Instant::now() >= deadline {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = conn.set_read_timeout(Some(
            left.clamp(Duration::from_millis(1), Duration::from_millis(500)),
        ));
        let n = (want - buf.len()).min(chunk.len());
        match conn.read(&mut chunk[..n]) {
            Ok(0) => return false,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return false,
        }
    }
    true
}

const MAX_HEAD: usize = 16 << 10;

/// Serves one connection: requests one after another (keep-alive) until the peer
/// closes, it idles past `idle_timeout`, a request is malformed, or the server stops.
fn serve(mut conn: TcpStream, sh: &Shared) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_write_timeout(Some(Duration::from_secs(10)));
    let _ = conn.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // The head: the first byte may take idle_timeout, the rest request_timeout.
        let mut deadline = Instant::now() + sh.cfg.idle_timeout;
        let head_len = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => break n,
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
                _ => {
                    let r = error(Encoding::Protobuf, 400, "malformed HTTP request head");
                    sh.metrics.count(400);
                    let _ = write_response(&mut conn, &r, true);
                    return;
                }
            }
            if !buf.is_empty() {
                deadline = deadline.min(Instant::now() + sh.cfg.request_timeout);
            }
            let want = buf.len() + 1;
            if !fill(&mut conn, &mut buf, want, deadline, &sh.stop) {
                return;
            }
        };
        let (owned_head, close_asked, chunked, length, expect_continue) = {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            let _ = req.parse(&buf[..head_len]);
            let header = |name: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
            };
            let head = Request {
                method: req.method.unwrap_or(""),
                path: req.path.unwrap_or(""),
                content_type: header("content-type"),
                content_encoding: header("content-encoding"),
                authorization: header("authorization"),
            };
            let http10 = req.version == Some(0);
            let conn_hdr = header("connection");
            let close_asked = conn_hdr.is_some_and(|c| c.eq_ignore_ascii_case("close"))
                || (http10 && !conn_hdr.is_some_and(|c| c.eq_ignore_ascii_case("keep-alive")));
            let chunked = header("transfer-encoding")
                .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
            let length = header("content-length").map(|v| v.trim().parse::<usize>());
            let expect_continue =
                header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
            (
                OwnedHead::from(&head),
                close_asked,
                chunked,
                length,
                expect_continue,
            )
        };
        let max = sh.cfg.limits.max_body_bytes;
        buf.drain(..head_len);
        // The body.
        let too_large = |conn: &mut TcpStream| {
            let r = error(
                encoding_of(owned_head.content_type.as_deref()).unwrap_or(Encoding::Protobuf),
                413,
                &format!("the body is larger than {max} bytes"),
            );
            sh.metrics.count(413);
            let _ = write_response(conn, &r, true);
        };
        let body_deadline = Instant::now() + sh.cfg.request_timeout;
        let body: Vec<u8> = if chunked {
            if expect_continue {
                let _ = conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            match read_chunked(&mut conn, &mut buf, max, body_deadline, &sh.stop) {
                Ok(b) => b,
                Err(ChunkedError::TooLarge) => return too_large(&mut conn),
                Err(ChunkedError::Malformed) => {
                    let r = error(Encoding::Protobuf, 400, "malformed chunked body");
                    sh.metrics.count(400);
                    let _ = write_response(&mut conn, &r, true);
                    return;
                }
                Err(ChunkedError::Gone) => return,
            }
        } else {
            let n = match length {
                None if owned_head.method == "POST" => {
                    let r = error(
                        Encoding::Protobuf,
                        411,
                        "Content-Length or chunked body needed",
                    );
                    sh.metrics.count(411);
                    let _ = write_response(&mut conn, &r, true);
                    return;
                }
                None => 0,
                Some(Ok(n)) => n,
                Some(Err(_)) => {
                    let r = error(Encoding::Protobuf, 400, "bad Content-Length");
                    sh.metrics.count(400);
                    let _ = write_response(&mut conn, &r, true);
                    return;
                }
            };
            if n > max {
                return too_large(&mut conn);
            }
            if expect_continue && buf.len() < n {
                let _ = conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            if !fill(&mut conn, &mut buf, n, body_deadline, &sh.stop) {
                return;
            }
            let rest = buf.split_off(n);
            std::mem::replace(&mut buf, rest)
        };
        let head = owned_head.borrow();
        let sink = &*sh.sink;
        let r = respond(&sh.cfg, &head, &body, sink, &sh.metrics);
        let close = close_asked || sh.stop.load(Relaxed);
        if write_response(&mut conn, &r, close).is_err() || close {
            return;
        }
    }
}

struct OwnedHead {
    method: String,
    path: String,
    content_type: Option<String>,
    content_encoding: Option<String>,
    authorization: Option<String>,
}

impl OwnedHead {
    fn from(r: &Request<'_>) -> OwnedHead {
        OwnedHead {
            method: r.method.to_string(),
            path: r.path.to_string(),
            content_type: r.content_type.map(str::to_string),
            content_encoding: r.content_encoding.map(str::to_string),
            authorization: r.authorization.map(str::to_string),
        }
    }
    fn borrow(&self) -> Request<'_> {
        Request {
            method: &self.method,
            path: &self.path,
            content_type: self.content_type.as_deref(),
            content_encoding: self.content_encoding.as_deref(),
            authorization: self.authorization.as_deref(),
        }
    }
}

enum ChunkedError {
    TooLarge,
    Malformed,
    Gone,
}

/// A `Transfer-Encoding: chunked` body, capped at `max` bytes; `buf` holds what was
/// read past the head and keeps what follows the body.
fn read_chunked(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
    max: usize,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<Vec<u8>, ChunkedError> {
    let mut body = Vec::new();
    loop {
        // The size line.
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            if buf.len() > 1024 {
                return Err(ChunkedError::Malformed);
            }
            let want = buf.len() + 1;
            if !fill(conn, buf, want, deadline, stop) {
                return Err(ChunkedError::Gone);
            }
        };
        let line = std::str::from_utf8(&buf[..line_end]).map_err(|_| ChunkedError::Malformed)?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| ChunkedError::Malformed)?;
        buf.drain(..line_end + 2);
        if size == 0 {
            // Trailers (ignored) up to the empty line.
            loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    let empty = i == 0;
                    buf.drain(..i + 2);
                    if empty {
                        return Ok(body);
                    }
                    continue;
                }
                if buf.len() > 8192 {
                    return Err(ChunkedError::Malformed);
                }
                let want = buf.len() + 1;
                if !fill(conn, buf, want, deadline, stop) {
                    return Err(ChunkedError::Gone);
                }
            }
        }
        if body.len() + size > max {
            return Err(ChunkedError::TooLarge);
        }
        if !fill(conn, buf, size + 2, deadline, stop) {
            return Err(ChunkedError::Gone);
        }
        body.extend_from_slice(&buf[..size]);
        if &buf[size..size + 2] != b"\r\n" {
            return Err(ChunkedError::Malformed);
        }
        buf.drain(..size + 2);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn write_response(conn: &mut TcpStream, r: &Response, close: bool) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    if let Some(s) = r.retry_after {
        head.push_str(&format!("Retry-After: {s}\r\n"));
    }
    if r.status == 401 {
        head.push_str("WWW-Authenticate: Bearer\r\n");
    }
    head.push_str(if close {
        "Connection: close\r\n\r\n"
    } else {
        "Connection: keep-alive\r\n\r\n"
    });
    let mut out = head.into_bytes();
    out.extend_from_slice(&r.body);
    conn.write_all(&out)?;
    conn.flush()
}

impl FeedMetrics {
    /// Prometheus text, every sample with `instance`.
    pub fn render(&self, instance: &str) -> String {
        use std::fmt::Write as _;
        let inst = instance
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let mut s = String::new();
        let mut add = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(s, "{name}{{instance=\"{inst}\"{labels}}} {v}");
            }
        };
        add(
            "lockstep_loki_feed_requests_total",
            "counter",
            "Decision feed requests, by the HTTP status answered.",
            self.requests()
                .into_iter()
                .map(|(st, n)| (format!(",status=\"{st}\""), n))
                .collect(),
        );
        add(
            "lockstep_loki_feed_spans_total",
            "counter",
            "Spans received on the decision feed.",
            vec![(String::new(), self.spans.load(Relaxed))],
        );
        add(
            "lockstep_loki_feed_trace_ids_total",
            "counter",
            "Distinct trace ids per request recorded as kept (a trace reported twice counts twice).",
            vec![(String::new(), self.trace_ids.load(Relaxed))],
        );
        add(
            "lockstep_loki_feed_invalid_ids_total",
            "counter",
            "Spans whose trace id was all zero or not 16 bytes (skipped).",
            vec![(String::new(), self.invalid_ids.load(Relaxed))],
        );
        s
    }
}
