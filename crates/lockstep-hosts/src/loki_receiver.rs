//! A Loki-compatible push receiver for tests, with switchable faults.
//!
//! [`LokiReceiver::start`] binds `127.0.0.1:0` (loopback only) and serves
//! `POST /loki/api/v1/push` from a small hand-written HTTP/1.1 server on background
//! threads (one per connection; keep-alive, `Content-Length` and chunked bodies,
//! `Expect: 100-continue`). It decodes both wire forms Loki takes (raw/block snappy +
//! protobuf `PushRequest`, and JSON; as in Loki, any `Content-Type` other than JSON is
//! read as protobuf), stores entries per tenant (`X-Scope-OrgID`, `fake` when absent as
//! in Loki without auth) and per stream, and counts every request and entry.
//!
//! What it enforces, following `/work/shared/facts/loki-push-api.md`:
//! - Label text form `{a="x", b="y"}` with `\\ \" \n \r \t` escapes; names must be
//!   `[a-zA-Z_][a-zA-Z0-9_]*` (stricter than Loki's parser, on purpose: a shipper must
//!   emit only these); empty values are dropped; no duplicate names; at least one and
//!   at most [`ReceiverConfig::max_labels`] (15) labels; name/value length 1024/2048.
//!   A stream breaking these rules is rejected whole; other streams are stored and the
//!   answer is 400.
//! - Line length ([`ReceiverConfig::max_line_bytes`], 256 KiB): that entry rejected, 400.
//! - Ordering, loosely like Loki 3.8: an entry older than (newest entry stored for its
//!   stream − [`ReceiverConfig::max_behind`], 1 h by default) is rejected as "too far
//!   behind" (400); "newest" advances within one push, so a request holding a stream's
//!   new and hour-old entries rejects its own old ones. There is no flush, so "newest"
//!   never resets. `max_behind: None` accepts any order.
//! - Exact duplicates (same stream, timestamp, line and metadata as a stored entry) are
//!   dropped silently (Loki drops them while in the head block; this receiver never
//!   flushes) and counted in [`Stats::duplicates_dropped`], so replays stay visible.
//! - Body larger than [`ReceiverConfig::max_body_bytes`] → 413; undecodable body → 400
//!   (nothing stored); no streams/entries → 422; `Content-Encoding` other than identity
//!   → 415 (Loki accepts gzip/deflate; no client here sends them).
//!
//! Fault modes ([`Mode`], switched at run time with [`LokiReceiver::set_mode`]) decide
//! the answer of each request when it has been read in full. Invariants: nothing is
//! stored for a request whose answer says nothing was stored (5xx, 429, 260, 413,
//! 422, malformed), except in [`Mode::StoreThenFail`] (a Loki that stored and then
//! failed) and [`Mode::Slow`] (stores after the delay even if the client gave up);
//! every request read in full is recorded with its arrival time; dropping the receiver
//! stops all threads and closes every socket.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::http::HttpRequest;
use lockstep_loki::{is_valid_label_name, PushRequest};

/// A stream's label set.
pub type Labels = BTreeMap<String, String>;

/// How the receiver answers (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Mode {
    /// Validate and store; 204, or 400 when some entries or streams were rejected.
    #[default]
    Accept,
    /// Answer this 5xx status; nothing stored.
    ServerError(u16),
    /// Answer 429 (tenant rate limit); nothing stored.
    TooManyRequests,
    /// Like `Accept`, but every `every_nth` entry of a request (the n-th, 2n-th, …,
    /// counted across streams in body order) is rejected as "too far behind"; the rest
    /// is stored and the answer is 400.
    PartialReject {
        /// Reject each entry whose 1-based position is a multiple of this (0 = none).
        every_nth: usize,
    },
    /// Answer 260 (tenant-wide ingestion block): the data is discarded. A request with
    /// validation errors still gets 400, as in Loki; nothing is stored either way.
    Blocked260,
    /// Read the request and never answer; the connection is closed (unanswered) when
    /// the mode changes or the receiver stops.
    BlackHole,
    /// Wait this long, then behave like `Accept` (stores even if the client is gone).
    Slow(Duration),
    /// Store like `Accept`, then answer this status (e.g. 500): what a client sees when
    /// Loki stored the push but failed or was cancelled before answering.
    StoreThenFail(u16),
    /// Stop listening and close every open connection: clients get connection refused.
    Refuse,
}

/// Receiver settings.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// Answer 401 to requests without `X-Scope-OrgID`. Default false (tenant `fake`).
    pub require_tenant: bool,
    /// Most labels per stream. Default 15.
    pub max_labels: usize,
    /// Longest line in bytes. Default 256 KiB.
    pub max_line_bytes: usize,
    /// Largest body accepted, in bytes (413 above). Default 32 MiB.
    pub max_body_bytes: usize,
    /// Out-of-order window behind the stream's newest entry. Default 1 h.
    pub max_behind: Option<Duration>,
    /// Drop exact duplicates of stored entries. Default true.
    pub drop_duplicates: bool,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        Self {
            require_tenant: false,
            max_labels: 15,
            max_line_bytes: 256 * 1024,
            max_body_bytes: 32 * 1024 * 1024,
            max_behind: Some(Duration::from_secs(3600)),
            drop_duplicates: true,
        }
    }
}

/// One stored log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: i128,
    /// The line.
    pub line: String,
    /// Structured metadata in the order received.
    pub structured_metadata: Vec<(String, String)>,
}

/// One request that was read in full.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// When its last byte arrived.
    pub at: Instant,
    /// Tenant (`fake` when the header was absent).
    pub tenant: String,
    /// `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// Body length in bytes (after de-chunking).
    pub body_len: usize,
    /// Mode in force when it was handled.
    pub mode: Mode,
    /// Status answered; `None` while pending or when never answered (black hole).
    pub status: Option<u16>,
    /// Entries the body held (0 when it could not be decoded).
    pub entries: usize,
    /// Entries stored from it.
    pub stored: usize,
    /// Entries rejected by validation (labels, length, too far behind).
    pub rejected: usize,
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests read in full.
    pub requests: u64,
    /// Requests by status answered.
    pub by_status: BTreeMap<u16, u64>,
    /// Requests read but never answered (black hole, or closed by stop/refuse).
    pub unanswered: u64,
    /// Entries stored.
    pub entries_stored: u64,
    /// Entries rejected by validation (400).
    pub entries_rejected: u64,
    /// Entries decoded but thrown away by a fault mode (5xx, 429, 260, black hole).
    pub entries_discarded: u64,
    /// Exact duplicates dropped.
    pub duplicates_dropped: u64,
    /// Connections accepted.
    pub connections: u64,
}

#[derive(Default)]
struct StreamStore {
    entries: Vec<StoredEntry>,
    newest: Option<i128>,
    by_ts: HashMap<i128, Vec<usize>>,
}

#[derive(Default)]
struct State {
    tenants: BTreeMap<String, BTreeMap<Labels, StreamStore>>,
    requests: Vec<RequestRecord>,
    stats: Stats,
}

struct Shared {
    cfg: ReceiverConfig,
    addr: SocketAddr,
    stop: AtomicBool,
    mode: Mutex<(Mode, u64)>,
    mode_cv: Condvar,
    listener: Mutex<Option<TcpListener>>,
    state: Mutex<State>,
    state_cv: Condvar,
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the receiver's data from the others.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running receiver. Dropping it stops every thread and closes every socket.
pub struct LokiReceiver {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LokiReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LokiReceiver")
            .field("addr", &self.shared.addr)
            .field("mode", &self.mode())
            .finish()
    }
}

const POLL: Duration = Duration::from_millis(10);

impl LokiReceiver {
    /// Start with default settings on `127.0.0.1:0`. Panics if loopback cannot be bound.
    pub fn start() -> Self {
        Self::start_with(ReceiverConfig::default())
    }

    /// Start with `cfg` on `127.0.0.1:0`. Panics if loopback cannot be bound (a test
    /// environment failure).
    pub fn start_with(cfg: ReceiverConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("set listener non-blocking");
        let addr = listener.local_addr().expect("listener address");
        let shared = Arc::new(Shared {
            cfg,
            addr,
            stop: AtomicBool::new(false),
            mode: Mutex::new((Mode::Accept, 0)),
            mode_cv: Condvar::new(),
            listener: Mutex::new(Some(listener)),
            state: Mutex::new(State::default()),
            state_cv: Condvar::new(),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("loki-receiver-accept".into())
            .spawn(move || accept_loop(s))
            .expect("spawn accept thread");
        Self {
            shared,
            accept: Some(accept),
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:PORT/loki/api/v1/push`.
    pub fn url(&self) -> String {
        format!("http://{}/loki/api/v1/push", self.shared.addr)
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        lock(&self.shared.mode).0.clone()
    }

    /// Switch the fault mode. Switching to [`Mode::Refuse`] closes the listening
    /// socket and every open connection before returning; switching away re-binds the
    /// same port (panics if it was taken meanwhile). Black-holed requests are closed
    /// unanswered.
    pub fn set_mode(&self, mode: Mode) {
        let prev = {
            let mut m = lock(&self.shared.mode);
            let prev = std::mem::replace(&mut m.0, mode.clone());
            m.1 += 1;
            prev
        };
        self.shared.mode_cv.notify_all();
        if mode == Mode::Refuse {
            drop(lock(&self.shared.listener).take());
            for c in lock(&self.shared.conns).values() {
                let _ = c.shutdown(Shutdown::Both);
            }
        } else if prev == Mode::Refuse {
            let mut l = lock(&self.shared.listener);
            if l.is_none() {
                let mut last = None;
                for _ in 0..50 {
                    match TcpListener::bind(self.shared.addr) {
                        Ok(n) => {
                            n.set_nonblocking(true).expect("set listener non-blocking");
                            *l = Some(n);
                            break;
                        }
                        Err(e) => {
                            last = Some(e);
                            std::thread::sleep(POLL);
                        }
                    }
                }
                assert!(l.is_some(), "re-bind {}: {last:?}", self.shared.addr);
            }
        }
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        lock(&self.shared.state).stats.clone()
    }

    /// Every request read in full, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.state).requests.clone()
    }

    /// Arrival times of every request read in full.
    pub fn request_times(&self) -> Vec<Instant> {
        lock(&self.shared.state)
            .requests
            .iter()
            .map(|r| r.at)
            .collect()
    }

    /// Number of requests read in full.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.state).requests.len()
    }

    /// Tenants that have stored entries.
    pub fn tenants(&self) -> Vec<String> {
        lock(&self.shared.state).tenants.keys().cloned().collect()
    }

    /// Stored streams of `tenant` (empty when none).
    pub fn entries(&self, tenant: &str) -> BTreeMap<Labels, Vec<StoredEntry>> {
        lock(&self.shared.state)
            .tenants
            .get(tenant)
            .map(|streams| {
                streams
                    .iter()
                    .filter(|(_, s)| !s.entries.is_empty())
                    .map(|(l, s)| (l.clone(), s.entries.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Entries stored over all tenants.
    pub fn total_stored(&self) -> u64 {
        lock(&self.shared.state).stats.entries_stored
    }

    /// Wait until at least `n` entries are stored in total; true if reached in time.
    pub fn wait_for(&self, n: u64, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.stats.entries_stored >= n)
    }

    /// Wait until at least `n` requests were read in full; true if reached in time.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.requests.len() >= n)
    }

    fn wait_until(&self, timeout: Duration, f: impl Fn(&State) -> bool) -> bool {
        let st = lock(&self.shared.state);
        let (st, _) = self
            .shared
            .state_cv
            .wait_timeout_while(st, timeout, |st| !f(st))
            .unwrap_or_else(|e| e.into_inner());
        f(&st)
    }
}

impl Drop for LokiReceiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.mode_cv.notify_all();
        drop(lock(&self.shared.listener).take());
        for c in lock(&self.shared.conns).values() {
            let _ = c.shutdown(Shutdown::Both);
        }
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        let threads = std::mem::take(&mut *lock(&self.shared.threads));
        for h in threads {
            let _ = h.join();
        }
    }
}

fn accept_loop(shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let accepted = match lock(&shared.listener).as_ref() {
            Some(l) => l.accept().map(|(s, _)| Some(s)),
            None => Ok(None),
        };
        match accepted {
            Ok(Some(stream)) => {
                let id = shared.next_conn.fetch_add(1, Ordering::SeqCst);
                let Ok(clone) = stream.try_clone() else {
                    continue;
                };
                lock(&shared.conns).insert(id, clone);
                lock(&shared.state).stats.connections += 1;
                let s = Arc::clone(&shared);
                let h = std::thread::Builder::new()
                    .name(format!("loki-receiver-conn-{id}"))
                    .spawn(move || {
                        crate::http::serve_connection(
                            &s.stop,
                            stream,
                            s.cfg.max_body_bytes,
                            POLL,
                            |req| handle(&s, req),
                        );
                        lock(&s.conns).remove(&id);
                    });
                match h {
                    Ok(h) => {
                        let mut threads = lock(&shared.threads);
                        threads.retain(|t| !t.is_finished());
                        threads.push(h);
                    }
                    Err(_) => {
                        lock(&shared.conns).remove(&id);
                    }
                }
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Wait while the mode generation stays `gen`; false when the receiver stops.
fn wait_mode_change(shared: &Shared, gen: u64) {
    let mut m = lock(&shared.mode);
    while m.1 == gen && !shared.stop.load(Ordering::SeqCst) {
        m = shared
            .mode_cv
            .wait_timeout(m, POLL)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// Sleep `d` unless the receiver stops first; true if it slept in full.
fn sleep_unless_stopped(shared: &Shared, d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(POLL));
    }
}

/// Handle one request: `Some((status, body))` to answer, `None` to close unanswered.
fn handle(shared: &Shared, req: &HttpRequest) -> Option<(u16, String)> {
    if req.path != "/loki/api/v1/push" {
        if req.method == "GET" && req.path == "/ready" {
            return Some((200, "ready".into()));
        }
        return Some((404, format!("404 page not found: {}", req.path)));
    }
    if req.method != "POST" {
        return Some((405, format!("method {} not allowed", req.method)));
    }
    let at = Instant::now();
    let (mode, gen) = lock(&shared.mode).clone();
    let tenant = req.header("X-Scope-OrgID").map(str::to_string);
    let idx = {
        let mut st = lock(&shared.state);
        st.requests.push(RequestRecord {
            at,
            tenant: tenant.clone().unwrap_or_else(|| "fake".into()),
            content_type: req.header("Content-Type").map(str::to_string),
            body_len: req.body.len(),
            mode: mode.clone(),
            status: None,
            entries: 0,
            stored: 0,
            rejected: 0,
        });
        st.stats.requests += 1;
        st.requests.len() - 1
    };
    shared.state_cv.notify_all();
    let finish = |status: Option<u16>, entries: usize, stored: usize, rejected: usize| {
        let mut st = lock(&shared.state);
        let r = &mut st.requests[idx];
        r.status = status;
        r.entries = entries;
        r.stored = stored;
        r.rejected = rejected;
        match status {
            Some(s) => *st.stats.by_status.entry(s).or_default() += 1,
            None => st.stats.unanswered += 1,
        }
        drop(st);
        shared.state_cv.notify_all();
    };
    let decoded = decode_body(req);
    let n_entries = decoded
        .as_ref()
        .map(|d| d.iter().map(|s| s.entries.len()).sum())
        .unwrap_or(0);
    let discard = |n: usize| lock(&shared.state).stats.entries_discarded += n as u64;
    match &mode {
        Mode::Refuse | Mode::BlackHole => {
            if mode == Mode::BlackHole {
                wait_mode_change(shared, gen);
            }
            discard(n_entries);
            finish(None, n_entries, 0, 0);
            return None;
        }
        Mode::ServerError(code) => {
            discard(n_entries);
            finish(Some(*code), n_entries, 0, 0);
            return Some((*code, "internal server error (injected)".into()));
        }
        Mode::TooManyRequests => {
            discard(n_entries);
            finish(Some(429), n_entries, 0, 0);
            return Some((
                429,
                "Ingestion rate limit exceeded for user (injected)".into(),
            ));
        }
        // Sleeps in the guard; on stop the request is closed unanswered.
        Mode::Slow(d) if !sleep_unless_stopped(shared, *d) => {
            finish(None, n_entries, 0, 0);
            return None;
        }
        _ => {}
    }
    if shared.cfg.require_tenant && tenant.is_none() {
        finish(Some(401), n_entries, 0, 0);
        return Some((401, "no org id".into()));
    }
    let tenant = tenant.unwrap_or_else(|| "fake".into());
    let streams = match decoded {
        Ok(s) => s,
        Err((status, msg)) => {
            finish(Some(status), 0, 0, 0);
            return Some((status, msg));
        }
    };
    if n_entries == 0 {
        finish(Some(422), 0, 0, 0);
        return Some((
            422,
            "error at least one entry is required (no streams)".into(),
        ));
    }
    let blocked = mode == Mode::Blocked260;
    let every_nth = match mode {
        Mode::PartialReject { every_nth } => every_nth,
        _ => 0,
    };
    let (stored, rejected, errors) = {
        let mut st = lock(&shared.state);
        let r = store(&mut st, &shared.cfg, &tenant, streams, every_nth, blocked);
        st.stats.entries_stored += r.0 as u64;
        st.stats.entries_rejected += r.1 as u64;
        r
    };
    if blocked {
        discard(n_entries - rejected);
    }
    let (status, body) = if !errors.is_empty() {
        (400, error_body(&errors, rejected, n_entries))
    } else if blocked {
        (260, "ingestion blocked for tenant (injected)".into())
    } else if let Mode::StoreThenFail(code) = mode {
        (code, "stored, then failed (injected)".into())
    } else {
        (204, String::new())
    };
    finish(Some(status), n_entries, stored, rejected);
    Some((status, body))
}

/// Loki-like 400 body: errors grouped by message, then "total ignored".
fn error_body(errors: &[String], rejected: usize, total: usize) -> String {
    let mut groups: Vec<(String, usize)> = Vec::new();
    for e in errors {
        let kind = e.split(':').next().unwrap_or(e).to_string();
        match groups.iter_mut().find(|(k, _)| *k == kind) {
            Some(g) => g.1 += 1,
            None => groups.push((kind, 1)),
        }
    }
    let mut out = String::new();
    for (kind, n) in groups {
        let example = errors
            .iter()
            .find(|e| e.split(':').next() == Some(kind.as_str()))
            .cloned()
            .unwrap_or_default();
        out.push_str(&format!("{n} errors like: {example}\n"));
    }
    out.push_str(&format!("total ignored: {rejected} out of {total}"));
    out
}

/// One decoded stream, labels still in text form (or a JSON map).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedStream {
    /// Labels: `Ok` parsed, `Err` why they are invalid.
    pub labels: Result<Labels, String>,
    /// Entries in body order.
    pub entries: Vec<StoredEntry>,
}

fn decode_body(req: &HttpRequest) -> Result<Vec<DecodedStream>, (u16, String)> {
    if let Some(enc) = req.header("Content-Encoding") {
        if !enc.is_empty() && !enc.eq_ignore_ascii_case("identity") {
            return Err((415, format!("unsupported Content-Encoding {enc:?}")));
        }
    }
    let is_json = req
        .header("Content-Type")
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        decode_json(&req.body).map_err(|e| (400, e))
    } else {
        decode_protobuf_snappy(&req.body).map_err(|e| (400, e))
    }
}

/// Decode a raw (block) snappy + protobuf `PushRequest` body.
pub fn decode_protobuf_snappy(body: &[u8]) -> Result<Vec<DecodedStream>, String> {
    use prost::Message;
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy decode of {} byte body: {e}", body.len()))?;
    let pr = PushRequest::decode(raw.as_slice())
        .map_err(|e| format!("protobuf decode of {} bytes: {e}", raw.len()))?;
    Ok(pr
        .streams
        .into_iter()
        .map(|s| DecodedStream {
            labels: parse_labels(&s.labels),
            entries: s
                .entries
                .into_iter()
                .map(|e| {
                    let ts = e.timestamp.unwrap_or_default();
                    StoredEntry {
                        ts_ns: ts.seconds as i128 * 1_000_000_000 + ts.nanos as i128,
                        line: e.line,
                        structured_metadata: e
                            .structured_metadata
                            .into_iter()
                            .map(|p| (p.name, p.value))
                            .collect(),
                    }
                })
                .collect(),
        })
        .collect())
}

/// Decode a JSON push body.
pub fn decode_json(body: &[u8]) -> Result<Vec<DecodedStream>, String> {
    use serde_json::Value;
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("JSON: {e}"))?;
    let streams = v
        .get("streams")
        .and_then(Value::as_array)
        .ok_or("JSON: missing \"streams\" array")?;
    let mut out = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        let labels = match s.get("stream").and_then(Value::as_object) {
            Some(m) => {
                let mut l = Vec::new();
                let mut err = None;
                for (k, v) in m {
                    match v.as_str() {
                        Some(v) => l.push((k.clone(), v.to_string())),
                        None => err = Some(format!("label {k:?} value is not a string")),
                    }
                }
                match err {
                    Some(e) => Err(e),
                    None => check_labels(l),
                }
            }
            None => Err("missing \"stream\" object".into()),
        };
        let values = s
            .get("values")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("JSON: streams[{i}]: missing \"values\" array"))?;
        let mut entries = Vec::new();
        for (j, val) in values.iter().enumerate() {
            let bad = |what: &str| format!("JSON: streams[{i}].values[{j}]: {what}");
            let arr = val.as_array().ok_or_else(|| bad("not an array"))?;
            if arr.len() < 2 || arr.len() > 3 {
                return Err(bad("want 2 or 3 elements"));
            }
            let ts_ns = arr[0]
                .as_str()
                .and_then(|t| t.parse::<i128>().ok())
                .ok_or_else(|| bad("timestamp is not a string of nanoseconds"))?;
            let line = arr[1].as_str().ok_or_else(|| bad("line is not a string"))?;
            let mut sm = Vec::new();
            if let Some(m) = arr.get(2) {
                let m = m
                    .as_object()
                    .ok_or_else(|| bad("structured metadata is not an object"))?;
                for (k, v) in m {
                    let v = v
                        .as_str()
                        .ok_or_else(|| bad("structured metadata value is not a string"))?;
                    sm.push((k.clone(), v.to_string()));
                }
            }
            entries.push(StoredEntry {
                ts_ns,
                line: line.to_string(),
                structured_metadata: sm,
            });
        }
        out.push(DecodedStream { labels, entries });
    }
    Ok(out)
}

/// Parse the label text form `{a="x", b="y"}` and check the label rules (names
/// `[a-zA-Z_][a-zA-Z0-9_]*`, no duplicates, empty values dropped, at least one label,
/// lengths). The 15-label limit is checked when storing (it is configurable).
pub fn parse_labels(text: &str) -> Result<Labels, String> {
    let err =
        |at: usize, what: &str| format!("parse error at byte {at} of labels {text:?}: {what}");
    let b = text.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if b.get(i) != Some(&b'{') {
        return Err(err(i, "expected '{'"));
    }
    i += 1;
    let mut pairs = Vec::new();
    skip_ws(&mut i);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            skip_ws(&mut i);
            let start = i;
            while i < b.len()
                && !matches!(b[i], b'=' | b',' | b'}' | b'"')
                && !b[i].is_ascii_whitespace()
            {
                i += 1;
            }
            let name = &text[start..i];
            skip_ws(&mut i);
            if b.get(i) != Some(&b'=') {
                return Err(err(i, "expected '='"));
            }
            i += 1;
            skip_ws(&mut i);
            if b.get(i) != Some(&b'"') {
                return Err(err(i, "expected '\"'"));
            }
            i += 1;
            let mut value = String::new();
            loop {
                let Some(c) = text[i..].chars().next() else {
                    return Err(err(i, "unterminated value"));
                };
                i += c.len_utf8();
                match c {
                    '"' => break,
                    '\\' => {
                        let Some(e) = text[i..].chars().next() else {
                            return Err(err(i, "unterminated escape"));
                        };
                        i += e.len_utf8();
                        value.push(match e {
                            '\\' => '\\',
                            '"' => '"',
                            'n' => '\n',
                            'r' => '\r',
                            't' => '\t',
                            _ => return Err(err(i - 1, "unknown escape")),
                        });
                    }
                    c => value.push(c),
                }
            }
            pairs.push((name.to_string(), value));
            skip_ws(&mut i);
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return Err(err(i, "expected ',' or '}'")),
            }
        }
    }
    skip_ws(&mut i);
    if i != b.len() {
        return Err(err(i, "trailing characters"));
    }
    check_labels(pairs)
}

fn check_labels(pairs: Vec<(String, String)>) -> Result<Labels, String> {
    let mut out = Labels::new();
    for (k, v) in pairs {
        if !is_valid_label_name(&k) {
            return Err(format!("invalid label name {k:?}"));
        }
        if k.len() > 1024 {
            return Err(format!("label name {k:?} longer than 1024 bytes"));
        }
        if v.len() > 2048 {
            return Err(format!("label {k:?} value longer than 2048 bytes"));
        }
        if out.contains_key(&k) {
            return Err(format!("duplicate label name {k:?}"));
        }
        if !v.is_empty() {
            out.insert(k, v);
        }
    }
    if out.is_empty() {
        return Err("at least one label pair is required per stream".into());
    }
    Ok(out)
}

/// Validate and store (unless `blocked`); returns (stored, rejected, error messages).
fn store(
    st: &mut State,
    cfg: &ReceiverConfig,
    tenant: &str,
    streams: Vec<DecodedStream>,
    every_nth: usize,
    blocked: bool,
) -> (usize, usize, Vec<String>) {
    let mut stored = 0;
    let mut rejected = 0;
    let mut errors = Vec::new();
    let mut position = 0usize;
    for s in streams {
        let labels = match s.labels {
            Ok(l) if l.len() > cfg.max_labels => Err(format!(
                "stream has {} labels, more than the limit of {}",
                l.len(),
                cfg.max_labels
            )),
            other => other,
        };
        let labels = match labels {
            Ok(l) => l,
            Err(e) => {
                position += s.entries.len();
                rejected += s.entries.len();
                errors.push(format!("error parsing labels: {e}"));
                continue;
            }
        };
        let text = format!("{labels:?}");
        let mut scratch = StreamStore::default();
        let stream = if blocked {
            &mut scratch
        } else {
            st.tenants
                .entry(tenant.to_string())
                .or_default()
                .entry(labels)
                .or_default()
        };
        for e in s.entries {
            position += 1;
            if every_nth > 0 && position.is_multiple_of(every_nth) {
                rejected += 1;
                errors.push(format!(
                    "entry too far behind: stream {text}, timestamp {} (injected)",
                    e.ts_ns
                ));
                continue;
            }
            if e.line.len() > cfg.max_line_bytes {
                rejected += 1;
                errors.push(format!(
                    "line too long: stream {text}, {} bytes, limit {}",
                    e.line.len(),
                    cfg.max_line_bytes
                ));
                continue;
            }
            if let (Some(win), Some(newest)) = (cfg.max_behind, stream.newest) {
                if e.ts_ns < newest - win.as_nanos() as i128 {
                    rejected += 1;
                    errors.push(format!(
                        "entry too far behind: stream {text}, timestamp {} is more than {win:?} behind the newest {newest}",
                        e.ts_ns
                    ));
                    continue;
                }
            }
            if blocked {
                continue;
            }
            if cfg.drop_duplicates {
                let dup = stream
                    .by_ts
                    .get(&e.ts_ns)
                    .is_some_and(|ix| ix.iter().any(|&k| stream.entries[k] == e));
                if dup {
                    st.stats.duplicates_dropped += 1;
                    continue;
                }
            }
            stream.newest = Some(stream.newest.map_or(e.ts_ns, |n| n.max(e.ts_ns)));
            stream
                .by_ts
                .entry(e.ts_ns)
                .or_default()
                .push(stream.entries.len());
            stream.entries.push(e);
            stored += 1;
        }
    }
    (stored, rejected, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_label_text_with_escapes() {
        let l = parse_labels(r#"{app="a\"b\\c\nd", host="h1", empty=""}"#).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l["app"], "a\"b\\c\nd");
        assert_eq!(l["host"], "h1");
    }

    #[test]
    fn rejects_bad_label_text() {
        for bad in [
            r#"{1app="x"}"#,
            r#"{app-x="x"}"#,
            r#"{app="x""#,
            r#"app="x"}"#,
            r#"{app="x", app="y"}"#,
            r#"{}"#,
            r#"{app="x"} trailing"#,
            r#"{app="\q"}"#,
        ] {
            assert!(parse_labels(bad).is_err(), "{bad} accepted");
        }
    }
}
