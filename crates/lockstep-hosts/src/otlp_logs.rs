//! An emulated Fluent Bit 5.1.1 `opentelemetry` input for OTLP/HTTP **protobuf logs**:
//! a real OpenTelemetry SDK posts `ExportLogsServiceRequest`s to [`OtlpLogsInput`], and
//! the test gets the exact `FLB_LOG_EVENT_FORMAT_FLUENT_BIT_V2` chunk bytes an output
//! plugin would be flushed (tag [`TAG`]).
//!
//! Emulated from tag `v5.1.1` of fluent/fluent-bit (facts confirmed on the release
//! binary: `/work/shared/facts/fluent-bit-otlp-logs.md`):
//! - `plugins/in_opentelemetry/opentelemetry_logs.c`:
//!   - `binary_payload_to_msgpack` (:388-777): one group per (resource, scope) that has
//!     records (an empty scope is skipped but still counts in `scope_id`), the group
//!     start metadata `{"schema":"otlp","resource_id":i,"scope_id":j}` (:500-506), the
//!     group body `{"resource":{attributes, dropped_attributes_count, schema_url},
//!     "scope":{schema_url, name, version, attributes, dropped_attributes_count}}`
//!     (:516-643; the resource `schema_url` is emitted even when empty because
//!     protobuf-c strings are never NULL, the scope one only when non-empty), the
//!     timestamp fallback time > 0, else observed > 0, else now (:658-677), and the
//!     body: a kvlist body is the record, any other body is `{"log": value}`, and an
//!     absent body is `{"log": nil}` (:711-738);
//!   - `otel_pack_v1_metadata` (:274-386): the `otlp` metadata map, in this key order:
//!     `observed_timestamp` (≠ 0), `timestamp` (≠ 0), `severity_number` (1..=24),
//!     `severity_text` (non-empty), `attributes` (non-empty), `dropped_attributes_count`
//!     (> 0), `trace_id` / `span_id` (bin, non-empty, any length), `trace_flags`
//!     (always, `flags & 0xff`), `event_name` (non-empty);
//!   - `otlp_pack_any_value` and helpers (:109-271): int AnyValues go through
//!     `otel_pack_int(msgpack_packer *, int)` (:124), so they are **truncated to int32**
//!     everywhere (attributes of resource, scope and record, bodies); bytes are bin; an
//!     unset value or `string_value_strindex` is nil; strings are packed with `strlen`, so
//!     they end at their first NUL byte.
//! - Map widths: maps opened with `flb_mp_map_header_init` (`src/flb_mp.c:591`, which
//!   packs a size of 65536 to force `0xdf`) or by the log event encoder's dynamic fields
//!   (`src/flb_log_event_encoder_dynamic_field.c:37`) are **map32**: group start/end
//!   metadata and bodies, `resource`, `scope`, record metadata and its `otlp` map.
//!   Attribute maps, arrays and record bodies use `msgpack_pack_map`/`_array`, which is
//!   minimal. Scalars are minimal (msgpack-c `pack_template.h`: str8 exists, doubles are
//!   always float64, `uint64`/`int64` pick the smallest form).
//! - Event framing: `src/flb_log_event_encoder.c:172` (direct emit: `92 92 d7 00`, BE u32
//!   seconds, BE u32 nanoseconds, metadata, body); group markers `:466`/`:497` (seconds
//!   `0xFFFFFFFF`/`0xFFFFFFFE`, nanoseconds 0; the end marker is
//!   `[[ext, map32{}], map32{}]`). A timestamp whose seconds do not fit a u32
//!   (`include/fluent-bit/flb_time.h:88`) fails the record, and Fluent Bit then drops
//!   the **whole request** and answers 400 (:755-757, :772-774, :849).
//! - HTTP (`plugins/in_opentelemetry/opentelemetry_prot.c:795-1125`): only `POST
//!   /v1/logs`; Content-Type `application/protobuf`, `application/x-protobuf` or
//!   `application/grpc*` selects the protobuf path (`opentelemetry_utils.c:137`);
//!   success answers the default `successful_response_code` [`SUCCESS_STATUS`] (201)
//!   with no body; a body that does not decode or convert answers `400 invalid request:
//!   deserialisation error`.
//!
//! Not emulated (answered with a 400 that says so, or documented here): the OTLP/JSON
//! path (`application/json`, or no Content-Type, which Fluent Bit treats as JSON),
//! gRPC framing, Content-Encodings other than gzip, `logs_metadata_key` /
//! `logs_body_key` / `tag` / `successful_response_code` settings (defaults only),
//! processors. Strings are decoded with prost, which rejects invalid UTF-8 (400) where
//! protobuf-c accepts the bytes. Each accepted request becomes one chunk; Fluent Bit may
//! flush several requests' events together, which is exactly the concatenation of the
//! chunks given here.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::http::HttpRequest;

/// The `fluent-bit-chunk` crate (the decoder output plugins use), for tests that read the
/// chunks: `chunk_decoder::Chunk::new(&bytes).records()`.
pub use ::fluent_bit_chunk as chunk_decoder;

/// The tag of every chunk (`tag_from_uri`: `/v1/logs` → `v1_logs`).
pub const TAG: &str = "v1_logs";

/// The HTTP status of an accepted request (Fluent Bit's default
/// `successful_response_code`, `plugins/in_opentelemetry/opentelemetry.c:198`).
pub const SUCCESS_STATUS: u16 = 201;

// ---------------------------------------------------------------------------------------
// opentelemetry-proto messages (field numbers as in opentelemetry-proto v1.x, the same as
// Fluent Bit's lib/fluent-otel-proto).
// ---------------------------------------------------------------------------------------

/// `opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportLogsServiceRequest {
    /// One entry per resource.
    #[prost(message, repeated, tag = "1")]
    pub resource_logs: Vec<ResourceLogs>,
}

/// `opentelemetry.proto.collector.logs.v1.ExportLogsServiceResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportLogsServiceResponse {
    /// Set when some records were rejected.
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportLogsPartialSuccess>,
}

/// `opentelemetry.proto.collector.logs.v1.ExportLogsPartialSuccess`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportLogsPartialSuccess {
    /// Number of rejected records.
    #[prost(int64, tag = "1")]
    pub rejected_log_records: i64,
    /// Why.
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// `opentelemetry.proto.logs.v1.ResourceLogs`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceLogs {
    /// The resource (absent: the group's `resource` is `{}`).
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// One entry per instrumentation scope.
    #[prost(message, repeated, tag = "2")]
    pub scope_logs: Vec<ScopeLogs>,
    /// The resource's schema URL.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// `opentelemetry.proto.resource.v1.Resource` (`entity_refs`, 3, is skipped).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    /// Resource attributes.
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    /// Dropped attributes.
    #[prost(uint32, tag = "2")]
    pub dropped_attributes_count: u32,
}

/// `opentelemetry.proto.logs.v1.ScopeLogs`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeLogs {
    /// The instrumentation scope (absent: the group's `scope` is `{}`).
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    /// The records.
    #[prost(message, repeated, tag = "2")]
    pub log_records: Vec<LogRecord>,
    /// The scope's schema URL.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// `opentelemetry.proto.common.v1.InstrumentationScope`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InstrumentationScope {
    /// Scope (logger) name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Scope version.
    #[prost(string, tag = "2")]
    pub version: String,
    /// Scope attributes.
    #[prost(message, repeated, tag = "3")]
    pub attributes: Vec<KeyValue>,
    /// Dropped attributes.
    #[prost(uint32, tag = "4")]
    pub dropped_attributes_count: u32,
}

/// `opentelemetry.proto.logs.v1.LogRecord`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogRecord {
    /// Event time, ns since the epoch (0: unknown).
    #[prost(fixed64, tag = "1")]
    pub time_unix_nano: u64,
    /// Observation time, ns since the epoch (0: unknown).
    #[prost(fixed64, tag = "11")]
    pub observed_time_unix_nano: u64,
    /// `SeverityNumber` enum value (0: unspecified).
    #[prost(int32, tag = "2")]
    pub severity_number: i32,
    /// Severity text.
    #[prost(string, tag = "3")]
    pub severity_text: String,
    /// The body.
    #[prost(message, optional, tag = "5")]
    pub body: Option<AnyValue>,
    /// Record attributes.
    #[prost(message, repeated, tag = "6")]
    pub attributes: Vec<KeyValue>,
    /// Dropped attributes.
    #[prost(uint32, tag = "7")]
    pub dropped_attributes_count: u32,
    /// W3C trace flags (low byte).
    #[prost(fixed32, tag = "8")]
    pub flags: u32,
    /// Trace id (16 bytes, or empty).
    #[prost(bytes = "vec", tag = "9")]
    pub trace_id: Vec<u8>,
    /// Span id (8 bytes, or empty).
    #[prost(bytes = "vec", tag = "10")]
    pub span_id: Vec<u8>,
    /// Event name.
    #[prost(string, tag = "12")]
    pub event_name: String,
}

/// `opentelemetry.proto.common.v1.KeyValue` (`key_strindex`, 3, is skipped).
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    /// The key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// The value (absent: nil).
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// `opentelemetry.proto.common.v1.AnyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    /// The value (unset: nil).
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4, 5, 6, 7, 8")]
    pub value: Option<any_value::Value>,
}

/// The `AnyValue.value` oneof.
pub mod any_value {
    /// One of the AnyValue kinds.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// `string_value`.
        #[prost(string, tag = "1")]
        StringValue(String),
        /// `bool_value`.
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        /// `int_value` (Fluent Bit keeps only its low 32 bits, signed).
        #[prost(int64, tag = "3")]
        IntValue(i64),
        /// `double_value`.
        #[prost(double, tag = "4")]
        DoubleValue(f64),
        /// `array_value`.
        #[prost(message, tag = "5")]
        ArrayValue(super::ArrayValue),
        /// `kvlist_value`.
        #[prost(message, tag = "6")]
        KvlistValue(super::KeyValueList),
        /// `bytes_value`.
        #[prost(bytes = "vec", tag = "7")]
        BytesValue(Vec<u8>),
        /// `string_value_strindex` (profiles only; nil in logs).
        #[prost(int32, tag = "8")]
        StringValueStrindex(i32),
    }
}

/// `opentelemetry.proto.common.v1.ArrayValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ArrayValue {
    /// Elements.
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<AnyValue>,
}

/// `opentelemetry.proto.common.v1.KeyValueList`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValueList {
    /// Entries, in order (duplicates kept).
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<KeyValue>,
}

impl AnyValue {
    fn of(v: any_value::Value) -> Self {
        AnyValue { value: Some(v) }
    }
    /// A string value.
    pub fn string(s: impl Into<String>) -> Self {
        Self::of(any_value::Value::StringValue(s.into()))
    }
    /// A bool value.
    pub fn bool(b: bool) -> Self {
        Self::of(any_value::Value::BoolValue(b))
    }
    /// An int value.
    pub fn int(i: i64) -> Self {
        Self::of(any_value::Value::IntValue(i))
    }
    /// A double value.
    pub fn double(d: f64) -> Self {
        Self::of(any_value::Value::DoubleValue(d))
    }
    /// A bytes value.
    pub fn bytes(b: impl Into<Vec<u8>>) -> Self {
        Self::of(any_value::Value::BytesValue(b.into()))
    }
    /// An array value.
    pub fn array(values: Vec<AnyValue>) -> Self {
        Self::of(any_value::Value::ArrayValue(ArrayValue { values }))
    }
    /// A key-value list value.
    pub fn kvlist(values: Vec<KeyValue>) -> Self {
        Self::of(any_value::Value::KvlistValue(KeyValueList { values }))
    }
}

impl KeyValue {
    /// `key = value`.
    pub fn new(key: impl Into<String>, value: AnyValue) -> Self {
        KeyValue {
            key: key.into(),
            value: Some(value),
        }
    }
}

/// Decodes an OTLP/protobuf `ExportLogsServiceRequest` body (already decompressed).
pub fn decode_export_logs(body: &[u8]) -> Result<ExportLogsServiceRequest, String> {
    <ExportLogsServiceRequest as prost::Message>::decode(body)
        .map_err(|e| format!("ExportLogsServiceRequest: {e}"))
}

// ---------------------------------------------------------------------------------------
// msgpack, byte for byte as msgpack-c and flb_mp write it.
// ---------------------------------------------------------------------------------------

/// An output buffer with msgpack-c's encodings.
struct Mp(Vec<u8>);

/// A map32 header whose count is patched at the end (`flb_mp_map_header_*`).
struct Map32 {
    offset: usize,
    entries: u32,
}

impl Mp {
    fn nil(&mut self) {
        self.0.push(0xc0);
    }

    fn bool(&mut self, b: bool) {
        self.0.push(if b { 0xc3 } else { 0xc2 });
    }

    /// `msgpack_pack_uint64` / `_uint8` (`msgpack_pack_real_uint64`).
    fn uint(&mut self, d: u64) {
        if d < 1 << 7 {
            self.0.push(d as u8);
        } else if d < 1 << 8 {
            self.0.extend_from_slice(&[0xcc, d as u8]);
        } else if d < 1 << 16 {
            self.0.push(0xcd);
            self.0.extend_from_slice(&(d as u16).to_be_bytes());
        } else if d < 1 << 32 {
            self.0.push(0xce);
            self.0.extend_from_slice(&(d as u32).to_be_bytes());
        } else {
            self.0.push(0xcf);
            self.0.extend_from_slice(&d.to_be_bytes());
        }
    }

    /// `msgpack_pack_int64` (`msgpack_pack_real_int64`): non-negative values as uint.
    fn int(&mut self, d: i64) {
        if d >= -(1 << 5) {
            // -32..=-1 is a negative fixint; the rest is unsigned.
            if d < 0 {
                self.0.push(d as u8);
            } else {
                self.uint(d as u64);
            }
        } else if d >= -(1 << 7) {
            self.0.extend_from_slice(&[0xd0, d as u8]);
        } else if d >= -(1 << 15) {
            self.0.push(0xd1);
            self.0.extend_from_slice(&(d as i16).to_be_bytes());
        } else if d >= -(1 << 31) {
            self.0.push(0xd2);
            self.0.extend_from_slice(&(d as i32).to_be_bytes());
        } else {
            self.0.push(0xd3);
            self.0.extend_from_slice(&d.to_be_bytes());
        }
    }

    /// `msgpack_pack_double`: always float64.
    fn double(&mut self, d: f64) {
        self.0.push(0xcb);
        self.0.extend_from_slice(&d.to_bits().to_be_bytes());
    }

    /// `msgpack_pack_str` + body.
    fn str(&mut self, s: &[u8]) {
        let l = s.len();
        if l < 32 {
            self.0.push(0xa0 | l as u8);
        } else if l < 256 {
            self.0.extend_from_slice(&[0xd9, l as u8]);
        } else if l < 65536 {
            self.0.push(0xda);
            self.0.extend_from_slice(&(l as u16).to_be_bytes());
        } else {
            self.0.push(0xdb);
            self.0.extend_from_slice(&(l as u32).to_be_bytes());
        }
        self.0.extend_from_slice(s);
    }

    /// `msgpack_pack_bin` + body (no fix form).
    fn bin(&mut self, b: &[u8]) {
        let l = b.len();
        if l < 256 {
            self.0.extend_from_slice(&[0xc4, l as u8]);
        } else if l < 65536 {
            self.0.push(0xc5);
            self.0.extend_from_slice(&(l as u16).to_be_bytes());
        } else {
            self.0.push(0xc6);
            self.0.extend_from_slice(&(l as u32).to_be_bytes());
        }
        self.0.extend_from_slice(b);
    }

    /// `msgpack_pack_map`: minimal.
    fn map(&mut self, n: usize) {
        self.header(n, 0x80, 0xde, 0xdf);
    }

    /// `msgpack_pack_array`: minimal.
    fn array(&mut self, n: usize) {
        self.header(n, 0x90, 0xdc, 0xdd);
    }

    fn header(&mut self, n: usize, fix: u8, m16: u8, m32: u8) {
        if n < 16 {
            self.0.push(fix | n as u8);
        } else if n < 65536 {
            self.0.push(m16);
            self.0.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            self.0.push(m32);
            self.0.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }

    /// `flb_mp_map_header_init`: a map32 to patch later.
    fn map32(&mut self) -> Map32 {
        let offset = self.0.len();
        self.0.extend_from_slice(&[0xdf, 0, 0, 0, 0]);
        Map32 { offset, entries: 0 }
    }

    /// `flb_mp_map_header_end`.
    fn end(&mut self, h: Map32) {
        self.0[h.offset + 1..h.offset + 5].copy_from_slice(&h.entries.to_be_bytes());
    }

    /// Registers an entry of `h` and writes its key.
    fn key(&mut self, h: &mut Map32, k: &str) {
        h.entries += 1;
        self.str(k.as_bytes());
    }

    /// `[[EventTime(sec, nsec),` as the encoder's direct emit writes it.
    fn event_head(&mut self, sec: u32, nsec: u32) {
        self.0.extend_from_slice(&[0x92, 0x92, 0xd7, 0x00]);
        self.0.extend_from_slice(&sec.to_be_bytes());
        self.0.extend_from_slice(&nsec.to_be_bytes());
    }

    /// `otlp_pack_any_value`.
    fn any(&mut self, v: Option<&AnyValue>) {
        use any_value::Value;
        match v.and_then(|v| v.value.as_ref()) {
            None | Some(Value::StringValueStrindex(_)) => self.nil(),
            Some(Value::StringValue(s)) => self.str(cstr(s)),
            Some(Value::BoolValue(b)) => self.bool(*b),
            // otel_pack_int(msgpack_packer *, int): the implicit conversion to int.
            Some(Value::IntValue(i)) => self.int(i64::from(*i as i32)),
            Some(Value::DoubleValue(d)) => self.double(*d),
            Some(Value::ArrayValue(a)) => {
                self.array(a.values.len());
                for e in &a.values {
                    self.any(Some(e));
                }
            }
            Some(Value::KvlistValue(kv)) => self.kvs(&kv.values),
            Some(Value::BytesValue(b)) => self.bin(b),
        }
    }

    /// `otel_pack_kvarray` / `otel_pack_kvlist`: a minimal map.
    fn kvs(&mut self, kvs: &[KeyValue]) {
        self.map(kvs.len());
        for kv in kvs {
            self.str(cstr(&kv.key));
            self.any(kv.value.as_ref());
        }
    }
}

/// A protobuf-c string as C sees it: up to its first NUL.
fn cstr(s: &str) -> &[u8] {
    let b = s.as_bytes();
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

/// The chunk Fluent Bit 5.1.1's protobuf path produces for `req` (see the module doc),
/// with `now_ns` standing for `flb_time_get()` (records with neither time nor observed
/// time). Empty when there is no record, and also when Fluent Bit would reject the whole
/// request (a timestamp past year 2106; [`try_fluent_bit_chunk`] says why).
pub fn fluent_bit_chunk(req: &ExportLogsServiceRequest, now_ns: u64) -> Vec<u8> {
    try_fluent_bit_chunk(req, now_ns).unwrap_or_default()
}

/// [`fluent_bit_chunk()`], with the reason when Fluent Bit would reject the request (and
/// ingest nothing of it).
pub fn try_fluent_bit_chunk(
    req: &ExportLogsServiceRequest,
    now_ns: u64,
) -> Result<Vec<u8>, String> {
    let mut mp = Mp(Vec::new());
    for (ri, rl) in req.resource_logs.iter().enumerate() {
        for (si, sl) in rl.scope_logs.iter().enumerate() {
            if sl.log_records.is_empty() {
                continue;
            }
            group_start(&mut mp, ri, si, rl, sl);
            for (k, rec) in sl.log_records.iter().enumerate() {
                record(&mut mp, rec, now_ns).map_err(|e| {
                    format!("resource_logs[{ri}].scope_logs[{si}].log_records[{k}]: {e}")
                })?;
            }
            // group end: [[ext(-2, 0), map32{}], map32{}]
            mp.event_head(0xFFFF_FFFE, 0);
            let h = mp.map32();
            mp.end(h);
            let h = mp.map32();
            mp.end(h);
        }
    }
    Ok(mp.0)
}

fn group_start(mp: &mut Mp, ri: usize, si: usize, rl: &ResourceLogs, sl: &ScopeLogs) {
    mp.event_head(0xFFFF_FFFF, 0);
    let mut meta = mp.map32();
    mp.key(&mut meta, "schema");
    mp.str(b"otlp");
    mp.key(&mut meta, "resource_id");
    mp.int(ri as i64);
    mp.key(&mut meta, "scope_id");
    mp.int(si as i64);
    mp.end(meta);

    let mut body = mp.map32();
    mp.key(&mut body, "resource");
    let mut res = mp.map32();
    if let Some(r) = &rl.resource {
        if !r.attributes.is_empty() {
            mp.key(&mut res, "attributes");
            mp.kvs(&r.attributes);
        }
        if r.dropped_attributes_count > 0 {
            mp.key(&mut res, "dropped_attributes_count");
            mp.uint(u64::from(r.dropped_attributes_count));
        }
        // `if (resource_log->schema_url)`: never NULL in protobuf-c, so always there.
        mp.key(&mut res, "schema_url");
        mp.str(cstr(&rl.schema_url));
    }
    mp.end(res);

    mp.key(&mut body, "scope");
    let mut sc = mp.map32();
    let schema_url = cstr(&sl.schema_url);
    if !schema_url.is_empty() {
        mp.key(&mut sc, "schema_url");
        mp.str(schema_url);
    }
    if let Some(s) = &sl.scope {
        if !cstr(&s.name).is_empty() {
            mp.key(&mut sc, "name");
            mp.str(cstr(&s.name));
        }
        if !cstr(&s.version).is_empty() {
            mp.key(&mut sc, "version");
            mp.str(cstr(&s.version));
        }
        if !s.attributes.is_empty() {
            mp.key(&mut sc, "attributes");
            mp.kvs(&s.attributes);
        }
        if s.dropped_attributes_count > 0 {
            mp.key(&mut sc, "dropped_attributes_count");
            mp.uint(u64::from(s.dropped_attributes_count));
        }
    }
    mp.end(sc);
    mp.end(body);
}

fn record(mp: &mut Mp, rec: &LogRecord, now_ns: u64) -> Result<(), String> {
    let ts = if rec.time_unix_nano > 0 {
        rec.time_unix_nano
    } else if rec.observed_time_unix_nano > 0 {
        rec.observed_time_unix_nano
    } else {
        now_ns
    };
    let sec = u32::try_from(ts / 1_000_000_000).map_err(|_| {
        format!("timestamp {ts} ns is past what an EventTime holds (flb_time_is_valid_eventtime)")
    })?;
    mp.event_head(sec, (ts % 1_000_000_000) as u32);

    let mut meta = mp.map32();
    mp.key(&mut meta, "otlp");
    let mut o = mp.map32();
    if rec.observed_time_unix_nano != 0 {
        mp.key(&mut o, "observed_timestamp");
        mp.uint(rec.observed_time_unix_nano);
    }
    if rec.time_unix_nano != 0 {
        mp.key(&mut o, "timestamp");
        mp.uint(rec.time_unix_nano);
    }
    if (1..=24).contains(&rec.severity_number) {
        mp.key(&mut o, "severity_number");
        mp.uint(rec.severity_number as u64);
    }
    if !cstr(&rec.severity_text).is_empty() {
        mp.key(&mut o, "severity_text");
        mp.str(cstr(&rec.severity_text));
    }
    if !rec.attributes.is_empty() {
        mp.key(&mut o, "attributes");
        mp.kvs(&rec.attributes);
    }
    if rec.dropped_attributes_count > 0 {
        mp.key(&mut o, "dropped_attributes_count");
        mp.uint(u64::from(rec.dropped_attributes_count));
    }
    if !rec.trace_id.is_empty() {
        mp.key(&mut o, "trace_id");
        mp.bin(&rec.trace_id);
    }
    if !rec.span_id.is_empty() {
        mp.key(&mut o, "span_id");
        mp.bin(&rec.span_id);
    }
    mp.key(&mut o, "trace_flags");
    mp.uint(u64::from(rec.flags & 0xff));
    if !cstr(&rec.event_name).is_empty() {
        mp.key(&mut o, "event_name");
        mp.str(cstr(&rec.event_name));
    }
    mp.end(o);
    mp.end(meta);

    match &rec.body {
        Some(AnyValue {
            value: Some(any_value::Value::KvlistValue(kv)),
        }) => mp.kvs(&kv.values),
        body => {
            mp.map(1);
            mp.str(b"log");
            mp.any(body.as_ref());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The HTTP/1.1 input.
// ---------------------------------------------------------------------------------------

const POLL: Duration = Duration::from_millis(10);
const MAX_BODY: usize = 64 * 1024 * 1024;

/// What the input answered to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// The request path.
    pub path: String,
    /// The HTTP status sent.
    pub status: u16,
    /// The response body sent (an error text, or empty).
    pub body: String,
}

#[derive(Default)]
struct State {
    chunks: Vec<Vec<u8>>,
    requests: Vec<ExportLogsServiceRequest>,
    answered: Vec<Answered>,
}

struct Shared {
    stop: AtomicBool,
    state: Mutex<State>,
    cv: Condvar,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the input's data from the others.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running emulated `opentelemetry` input on `127.0.0.1` (ephemeral port): `POST
/// /v1/logs` with an OTLP/protobuf body (optionally `Content-Encoding: gzip`;
/// Content-Length or chunked; keep-alive). Each accepted request's chunk is kept, in
/// arrival order, before the response is sent, so a client that has seen its answer
/// can read [`OtlpLogsInput::chunks`] right away. Dropping it stops every thread.
pub struct OtlpLogsInput {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for OtlpLogsInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpLogsInput")
            .field("addr", &self.addr)
            .finish()
    }
}

impl OtlpLogsInput {
    /// Starts listening. Panics if loopback cannot be bound (a test environment failure).
    pub fn start() -> OtlpLogsInput {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("set listener non-blocking");
        let addr = listener.local_addr().expect("listener address");
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            threads: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("otlp-logs-accept".into())
            .spawn(move || accept_loop(&s, listener))
            .expect("spawn accept thread");
        OtlpLogsInput {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OTLP/HTTP logs endpoint, `http://127.0.0.1:PORT/v1/logs`.
    pub fn url(&self) -> String {
        format!("http://{}/v1/logs", self.addr)
    }

    /// Every chunk produced so far (one per accepted request with records), tag [`TAG`].
    pub fn chunks(&self) -> Vec<Vec<u8>> {
        lock(&self.shared.state).chunks.clone()
    }

    /// Takes the chunks produced so far (later calls return only newer ones).
    pub fn take_chunks(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut lock(&self.shared.state).chunks)
    }

    /// The decoded requests accepted so far.
    pub fn requests(&self) -> Vec<ExportLogsServiceRequest> {
        lock(&self.shared.state).requests.clone()
    }

    /// Every answer sent so far, in order.
    pub fn answered(&self) -> Vec<Answered> {
        lock(&self.shared.state).answered.clone()
    }

    /// Waits until at least `n` chunks are held; false on timeout.
    pub fn wait_for_chunks(&self, n: usize, timeout: Duration) -> bool {
        let st = lock(&self.shared.state);
        let (st, _) = self
            .shared
            .cv
            .wait_timeout_while(st, timeout, |st| st.chunks.len() < n)
            .unwrap_or_else(|e| e.into_inner());
        st.chunks.len() >= n
    }
}

impl Drop for OtlpLogsInput {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        let threads = std::mem::take(&mut *lock(&self.shared.threads));
        for h in threads {
            let _ = h.join();
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    let mut n = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                n += 1;
                let s = Arc::clone(shared);
                let h = std::thread::Builder::new()
                    .name(format!("otlp-logs-conn-{n}"))
                    .spawn(move || {
                        crate::http::serve_connection(&s.stop, stream, MAX_BODY, POLL, |req| {
                            Some(handle(&s, req))
                        })
                    });
                if let Ok(h) = h {
                    let mut threads = lock(&shared.threads);
                    threads.retain(|t| !t.is_finished());
                    threads.push(h);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Matches `opentelemetry_content_type_matches`: a case-insensitive prefix followed by
/// the end, `;`, a space or a tab.
fn content_type_is(ct: &str, expected: &str) -> bool {
    let (c, e) = (ct.as_bytes(), expected.as_bytes());
    c.len() >= e.len()
        && c[..e.len()].eq_ignore_ascii_case(e)
        && matches!(c.get(e.len()), None | Some(b';' | b' ' | b'\t'))
}

fn is_protobuf(ct: &str) -> bool {
    let grpc = ct.len() >= 16
        && ct.as_bytes()[..16].eq_ignore_ascii_case(b"application/grpc")
        && matches!(
            ct.as_bytes().get(16),
            None | Some(b'+' | b';' | b' ' | b'\t')
        );
    content_type_is(ct, "application/protobuf")
        || content_type_is(ct, "application/x-protobuf")
        || grpc
}

const DESERIALISATION_ERROR: &str = "invalid request: deserialisation error\n";

fn handle(shared: &Shared, req: &HttpRequest) -> (u16, String) {
    let (status, body) = answer(shared, req);
    lock(&shared.state).answered.push(Answered {
        path: req.path.clone(),
        status,
        body: body.clone(),
    });
    (status, body)
}

fn answer(shared: &Shared, req: &HttpRequest) -> (u16, String) {
    if req.path != "/v1/logs" {
        return (404, "error: invalid endpoint\n".into());
    }
    if req.method != "POST" {
        return (400, "error: invalid HTTP method\n".into());
    }
    if req.body.is_empty() {
        return (400, "error: invalid content-length\n".into());
    }
    let body = match req.header("Content-Encoding") {
        None => req.body.clone(),
        Some(enc) if enc.eq_ignore_ascii_case("gzip") => {
            let mut out = Vec::new();
            let mut dec = flate2::read::GzDecoder::new(&req.body[..]).take(MAX_BODY as u64 + 1);
            match dec.read_to_end(&mut out) {
                Ok(_) if out.len() <= MAX_BODY => out,
                _ => return (400, DESERIALISATION_ERROR.into()),
            }
        }
        Some(enc) => {
            return (
                400,
                format!(
                    "lockstep emulation: Content-Encoding {enc:?} is not emulated (only gzip)\n"
                ),
            )
        }
    };
    match req.header("Content-Type") {
        Some(ct) if is_protobuf(ct) => {}
        Some(ct) if content_type_is(ct, "application/json") => {
            return (400, "lockstep emulation: the OTLP/JSON path is not emulated\n".into())
        }
        None => {
            return (
                400,
                "lockstep emulation: no Content-Type (Fluent Bit would take the JSON path, not emulated)\n"
                    .into(),
            )
        }
        Some(_) => return (400, DESERIALISATION_ERROR.into()),
    }
    let Ok(decoded) = decode_export_logs(&body) else {
        return (400, DESERIALISATION_ERROR.into());
    };
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let Ok(chunk) = try_fluent_bit_chunk(&decoded, now_ns) else {
        return (400, DESERIALISATION_ERROR.into());
    };
    let mut st = lock(&shared.state);
    if !chunk.is_empty() {
        st.chunks.push(chunk);
    }
    st.requests.push(decoded);
    drop(st);
    shared.cv.notify_all();
    (SUCCESS_STATUS, String::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;
    use ::fluent_bit_chunk::{Chunk, EventKind, MapView, Record, ValueRef};
    use prost::Message;
    use std::io::Write;

    const T0: u64 = 1_700_000_000_123_456_789;
    const NOW: u64 = 1_800_000_000_000_000_007;

    fn kv(k: &str, v: AnyValue) -> KeyValue {
        KeyValue::new(k, v)
    }

    fn rec(body: Option<AnyValue>) -> LogRecord {
        LogRecord {
            time_unix_nano: T0,
            body,
            ..Default::default()
        }
    }

    fn rec_at(time_unix_nano: u64) -> LogRecord {
        LogRecord {
            time_unix_nano,
            ..Default::default()
        }
    }

    fn request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", AnyValue::string("checkout"))],
                    dropped_attributes_count: 0,
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "lockstep.test".into(),
                        version: "1.2.3".into(),
                        ..Default::default()
                    }),
                    log_records: records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    /// The records of a chunk, which must decode completely.
    fn records(bytes: &[u8]) -> Vec<Record<'_>> {
        let c = Chunk::new(bytes);
        c.validate().expect("a valid chunk");
        c.records().map(|r| r.expect("record")).collect()
    }

    fn otlp<'a>(r: &Record<'a>) -> MapView<'a> {
        r.event
            .metadata
            .get("otlp")
            .and_then(|v| v.as_map())
            .expect("otlp map")
    }

    fn keys(m: MapView<'_>) -> Vec<String> {
        m.iter()
            .map(|(k, _)| k.as_str().expect("string key").to_string())
            .collect()
    }

    fn one(r: LogRecord) -> Vec<u8> {
        fluent_bit_chunk(&request(vec![r]), NOW)
    }

    #[test]
    fn bodies() {
        // string → {"log": s}
        let b = one(rec(Some(AnyValue::string("payment failed"))));
        let r = &records(&b)[0];
        assert_eq!(keys(r.event.body), ["log"]);
        assert_eq!(
            r.event.body.get("log").unwrap().as_str(),
            Some("payment failed")
        );
        assert_eq!(r.event.body.raw()[0], 0x81, "bodies are minimal maps");

        // kvlist → the map itself, in order, nested values kept
        let b = one(rec(Some(AnyValue::kvlist(vec![
            kv("msg", AnyValue::string("structured")),
            kv("n", AnyValue::int(7)),
            kv(
                "nested",
                AnyValue::kvlist(vec![kv("ok", AnyValue::bool(true))]),
            ),
        ]))));
        let r = &records(&b)[0];
        assert_eq!(keys(r.event.body), ["msg", "n", "nested"]);
        assert_eq!(r.event.body.get("n").unwrap().as_i64(), Some(7));
        let nested = r.event.body.get("nested").unwrap().as_map().unwrap();
        assert_eq!(nested.get("ok"), Some(ValueRef::Bool(true)));
        assert_eq!(r.event.body.raw()[0], 0x83);

        // absent body, and a body with no value → {"log": nil}
        for body in [None, Some(AnyValue { value: None })] {
            let b = one(rec(body));
            let r = &records(&b)[0];
            assert_eq!(keys(r.event.body), ["log"]);
            assert_eq!(r.event.body.get("log"), Some(ValueRef::Nil));
        }

        // other kinds are wrapped too; ints are truncated in bodies as well
        let b = one(rec(Some(AnyValue::int(5_000_000_000))));
        assert_eq!(
            records(&b)[0].event.body.get("log").unwrap().as_i64(),
            Some(705_032_704)
        );
        let b = one(rec(Some(AnyValue::array(vec![
            AnyValue::string("a"),
            AnyValue::double(1.5),
            AnyValue::bytes(vec![1, 2]),
        ]))));
        let log = records(&b)[0]
            .event
            .body
            .get("log")
            .unwrap()
            .as_array()
            .unwrap();
        let items: Vec<_> = log.iter().collect();
        assert_eq!(items[0].as_str(), Some("a"));
        assert_eq!(items[1], ValueRef::F64(1.5));
        assert_eq!(items[2], ValueRef::Bin(&[1, 2]));
    }

    #[test]
    fn attributes_and_int32_truncation() {
        let mut r = rec(Some(AnyValue::string("x")));
        r.attributes = vec![
            kv("big", AnyValue::int(5_000_000_000)),
            kv("neg", AnyValue::int(-5_000_000_000)),
            kv("small", AnyValue::int(-3)),
            kv("d", AnyValue::double(0.25)),
            kv("b", AnyValue::bool(false)),
            kv(
                "arr",
                AnyValue::array(vec![AnyValue::string("a"), AnyValue::string("b")]),
            ),
            kv(
                "map",
                AnyValue::kvlist(vec![
                    kv("k", AnyValue::string("v")),
                    kv("i", AnyValue::int(1 << 40)),
                ]),
            ),
            kv("bytes", AnyValue::bytes(b"\x00\xff".to_vec())),
            KeyValue {
                key: "unset".into(),
                value: None,
            },
            kv(
                "strindex",
                AnyValue {
                    value: Some(any_value::Value::StringValueStrindex(3)),
                },
            ),
            kv("nul\0cut", AnyValue::string("before\0after")),
        ];
        let mut res_req = request(vec![r]);
        res_req.resource_logs[0]
            .resource
            .as_mut()
            .unwrap()
            .attributes
            .push(kv("res.int", AnyValue::int(5_000_000_000)));
        let b = fluent_bit_chunk(&res_req, NOW);
        let recs = records(&b);
        let a = otlp(&recs[0]).get("attributes").unwrap().as_map().unwrap();
        assert_eq!(
            keys(a),
            ["big", "neg", "small", "d", "b", "arr", "map", "bytes", "unset", "strindex", "nul"]
        );
        assert_eq!(a.get("big").unwrap().as_i64(), Some(705_032_704));
        assert_eq!(a.get("neg").unwrap().as_i64(), Some(-705_032_704));
        assert_eq!(a.get("small"), Some(ValueRef::Int(-3)));
        assert_eq!(a.get("d"), Some(ValueRef::F64(0.25)));
        assert_eq!(a.get("b"), Some(ValueRef::Bool(false)));
        let arr: Vec<_> = a
            .get("arr")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(arr, ["a", "b"]);
        let m = a.get("map").unwrap().as_map().unwrap();
        assert_eq!(m.get("k").unwrap().as_str(), Some("v"));
        assert_eq!(
            m.get("i").unwrap().as_i64(),
            Some(0),
            "1<<40 keeps its low 32 bits"
        );
        assert_eq!(a.get("bytes"), Some(ValueRef::Bin(b"\x00\xff")));
        assert_eq!(a.get("unset"), Some(ValueRef::Nil));
        assert_eq!(a.get("strindex"), Some(ValueRef::Nil));
        assert_eq!(a.get("nul").unwrap().as_str(), Some("before"));
        let g = recs[0].group.unwrap();
        let res = g.attributes.get("resource").unwrap().as_map().unwrap();
        let ra = res.get("attributes").unwrap().as_map().unwrap();
        assert_eq!(ra.get("res.int").unwrap().as_i64(), Some(705_032_704));
    }

    #[test]
    fn metadata_fields_and_order() {
        let mut r = rec(Some(AnyValue::string("x")));
        r.observed_time_unix_nano = T0 + 1;
        r.severity_number = 24;
        r.severity_text = "FATAL4".into();
        r.attributes = vec![kv("k", AnyValue::string("v"))];
        r.dropped_attributes_count = 2;
        r.trace_id = (1..=16).collect();
        r.span_id = vec![9; 8];
        r.flags = 0x101;
        r.event_name = "checkout.failed".into();
        let b = one(r);
        let recs = records(&b);
        let o = otlp(&recs[0]);
        assert_eq!(
            keys(o),
            [
                "observed_timestamp",
                "timestamp",
                "severity_number",
                "severity_text",
                "attributes",
                "dropped_attributes_count",
                "trace_id",
                "span_id",
                "trace_flags",
                "event_name"
            ]
        );
        assert_eq!(o.get("observed_timestamp"), Some(ValueRef::UInt(T0 + 1)));
        assert_eq!(o.get("timestamp"), Some(ValueRef::UInt(T0)));
        assert_eq!(o.get("severity_number"), Some(ValueRef::UInt(24)));
        assert_eq!(o.get("severity_text").unwrap().as_str(), Some("FATAL4"));
        assert_eq!(o.get("dropped_attributes_count"), Some(ValueRef::UInt(2)));
        let tid: Vec<u8> = (1..=16).collect();
        assert_eq!(o.get("trace_id"), Some(ValueRef::Bin(&tid)));
        assert_eq!(o.get("span_id"), Some(ValueRef::Bin(&[9; 8])));
        assert_eq!(
            o.get("trace_flags"),
            Some(ValueRef::UInt(1)),
            "flags & 0xff"
        );
        assert_eq!(
            o.get("event_name").unwrap().as_str(),
            Some("checkout.failed")
        );
        // map32 for the metadata and the otlp map
        assert_eq!(&recs[0].event.metadata.raw()[..5], &[0xdf, 0, 0, 0, 1]);
        assert_eq!(&o.raw()[..5], &[0xdf, 0, 0, 0, 10]);

        // the minimum: trace_flags alone (time 0 and observed 0 fall back to now)
        let b = one(LogRecord::default());
        let recs = records(&b);
        assert_eq!(keys(otlp(&recs[0])), ["trace_flags"]);
        assert_eq!(otlp(&recs[0]).get("trace_flags"), Some(ValueRef::UInt(0)));

        // severity_number only in 1..=24; trace_flags 0xff as uint8; odd-length ids kept
        for (sev, present) in [(0, false), (1, true), (24, true), (25, false), (-1, false)] {
            let mut r = LogRecord {
                severity_number: sev,
                flags: 0xff,
                trace_id: vec![1, 2, 3],
                ..Default::default()
            };
            r.time_unix_nano = T0;
            let b = one(r);
            let recs = records(&b);
            let o = otlp(&recs[0]);
            assert_eq!(
                o.get("severity_number").is_some(),
                present,
                "severity {sev}"
            );
            assert_eq!(o.get("trace_flags"), Some(ValueRef::UInt(255)));
            assert_eq!(o.get("trace_id"), Some(ValueRef::Bin(&[1, 2, 3])));
        }
    }

    #[test]
    fn timestamp_fallback() {
        let ts = |time: u64, observed: u64| {
            let b = one(LogRecord {
                time_unix_nano: time,
                observed_time_unix_nano: observed,
                ..Default::default()
            });
            let r = records(&b)[0];
            (r.event.timestamp.sec, r.event.timestamp.nsec)
        };
        assert_eq!(ts(T0, T0 + 5), (1_700_000_000, 123_456_789));
        assert_eq!(ts(0, T0 + 5), (1_700_000_000, 123_456_794));
        assert_eq!(ts(0, 0), (1_800_000_000, 7));
        // seconds past u32: Fluent Bit drops the whole request
        let mut req = request(vec![rec(None), rec(None)]);
        req.resource_logs[0].scope_logs[0].log_records[1].time_unix_nano =
            (1u64 << 32) * 1_000_000_000;
        assert!(try_fluent_bit_chunk(&req, NOW).is_err());
        assert!(fluent_bit_chunk(&req, NOW).is_empty());
        // seconds up to u32::MAX are accepted, even the group markers' 0xFFFFFFFE and
        // 0xFFFFFFFF (which a decoder then takes for a marker: as in Fluent Bit)
        let below = 0xFFFF_FFFDu64 * 1_000_000_000 + 999_999_999;
        assert_eq!(ts(below, 0), (0xFFFF_FFFD, 999_999_999));
        let last = u64::from(u32::MAX) * 1_000_000_000 + 999_999_999;
        let b = one(rec_at(last));
        assert_eq!(
            &b[b.len() - 22..][..12],
            b"\x92\x92\xd7\x00\xff\xff\xff\xfe\0\0\0\0"
        );
        assert!(b
            .windows(12)
            .any(|w| w == b"\x92\x92\xd7\x00\xff\xff\xff\xff\x3b\x9a\xc9\xff"));
    }

    #[test]
    fn groups() {
        let recs_of = |n: usize| {
            (0..n)
                .map(|_| rec(Some(AnyValue::string("x"))))
                .collect::<Vec<_>>()
        };
        let req = ExportLogsServiceRequest {
            resource_logs: vec![
                ResourceLogs {
                    resource: None,
                    scope_logs: vec![
                        ScopeLogs::default(),
                        ScopeLogs {
                            scope: None,
                            log_records: recs_of(2),
                            schema_url: "https://s/1".into(),
                        },
                    ],
                    schema_url: "https://r/ignored-without-resource".into(),
                },
                ResourceLogs::default(),
                ResourceLogs {
                    resource: Some(Resource {
                        attributes: vec![],
                        dropped_attributes_count: 3,
                    }),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(InstrumentationScope {
                            name: "n".into(),
                            version: String::new(),
                            attributes: vec![kv("s", AnyValue::int(1))],
                            dropped_attributes_count: 4,
                        }),
                        log_records: recs_of(1),
                        schema_url: String::new(),
                    }],
                    schema_url: "https://r/2".into(),
                },
            ],
        };
        let b = fluent_bit_chunk(&req, NOW);
        let c = Chunk::new(&b);
        let kinds: Vec<_> = c.events().map(|e| e.unwrap().kind).collect();
        use EventKind::*;
        assert_eq!(
            kinds,
            [GroupStart, Record, Record, GroupEnd, GroupStart, Record, GroupEnd]
        );
        let starts: Vec<_> = c
            .events()
            .map(|e| e.unwrap())
            .filter(|e| e.kind == GroupStart)
            .collect();
        let ids = |m: MapView<'_>| {
            (
                m.get("schema").unwrap().as_str().unwrap().to_string(),
                m.get("resource_id").unwrap().as_i64().unwrap(),
                m.get("scope_id").unwrap().as_i64().unwrap(),
            )
        };
        assert_eq!(ids(starts[0].metadata), ("otlp".to_string(), 0, 1));
        assert_eq!(ids(starts[1].metadata), ("otlp".to_string(), 2, 0));
        assert_eq!(
            keys(starts[0].metadata),
            ["schema", "resource_id", "scope_id"]
        );
        assert_eq!(keys(starts[0].body), ["resource", "scope"]);
        // no resource: {}; no scope: only its schema_url
        let res0 = starts[0].body.get("resource").unwrap().as_map().unwrap();
        assert!(res0.is_empty());
        assert_eq!(&res0.raw()[..5], &[0xdf, 0, 0, 0, 0]);
        let sc0 = starts[0].body.get("scope").unwrap().as_map().unwrap();
        assert_eq!(keys(sc0), ["schema_url"]);
        assert_eq!(sc0.get("schema_url").unwrap().as_str(), Some("https://s/1"));
        let res1 = starts[1].body.get("resource").unwrap().as_map().unwrap();
        assert_eq!(keys(res1), ["dropped_attributes_count", "schema_url"]);
        assert_eq!(
            res1.get("schema_url").unwrap().as_str(),
            Some("https://r/2")
        );
        let sc1 = starts[1].body.get("scope").unwrap().as_map().unwrap();
        assert_eq!(
            keys(sc1),
            ["name", "attributes", "dropped_attributes_count"]
        );
        assert_eq!(sc1.get("dropped_attributes_count"), Some(ValueRef::UInt(4)));
        // group end is [[ext(-2), map32{}], map32{}]
        let end = [
            0x92, 0x92, 0xd7, 0x00, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 0, 0xdf, 0, 0, 0, 0, 0xdf, 0,
            0, 0, 0,
        ];
        assert!(b.ends_with(&end));
        // records know their group
        let recs = records(&b);
        assert_eq!(recs.len(), 3);
        assert_eq!(
            recs[2]
                .group
                .unwrap()
                .metadata
                .get("resource_id")
                .unwrap()
                .as_i64(),
            Some(2)
        );
        // nothing at all
        assert!(fluent_bit_chunk(&ExportLogsServiceRequest::default(), NOW).is_empty());
        assert!(fluent_bit_chunk(&request(vec![]), NOW).is_empty());
    }

    /// The facts file's §3 request sent as protobuf: the exact chunk (its decoded form
    /// is the one observed with v5.1.1, plus the PB-only `timestamp`, `trace_flags` and
    /// resource `schema_url`; widths as observed: map32 for group/metadata/otlp/resource/
    /// scope maps, fixmaps for attributes and bodies).
    #[test]
    fn facts_section_3_exact_bytes() {
        let tid = hex("5b8aa5a2d2c872e8321cf37308d69df2");
        let sid = hex("051581bf3cb55c13");
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", AnyValue::string("checkout"))],
                    dropped_attributes_count: 0,
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "my.lib".into(),
                        version: "1.2.3".into(),
                        attributes: vec![kv("scope.attr", AnyValue::bool(true))],
                        dropped_attributes_count: 0,
                    }),
                    log_records: vec![
                        LogRecord {
                            time_unix_nano: 1_700_000_000_123_456_789,
                            observed_time_unix_nano: 1_700_000_000_200_000_000,
                            severity_number: 9,
                            severity_text: "INFO".into(),
                            trace_id: tid.clone(),
                            span_id: sid.clone(),
                            flags: 1,
                            attributes: vec![
                                kv("http.status_code", AnyValue::int(500)),
                                kv("user", AnyValue::string("alice")),
                            ],
                            body: Some(AnyValue::string("payment failed")),
                            ..Default::default()
                        },
                        LogRecord {
                            time_unix_nano: 1_700_000_001_000_000_000,
                            severity_number: 17,
                            body: Some(AnyValue::kvlist(vec![
                                kv("msg", AnyValue::string("structured")),
                                kv("n", AnyValue::int(7)),
                            ])),
                            ..Default::default()
                        },
                    ],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        // Through the wire, as the input gets it.
        let req = decode_export_logs(&req.encode_to_vec()).unwrap();

        let mut e: Vec<u8> = Vec::new();
        // group start
        e.extend(b"\x92\x92\xd7\x00\xff\xff\xff\xff\x00\x00\x00\x00");
        e.extend(b"\xdf\x00\x00\x00\x03\xa6schema\xa4otlp\xabresource_id\x00\xa8scope_id\x00");
        e.extend(b"\xdf\x00\x00\x00\x02");
        e.extend(b"\xa8resource\xdf\x00\x00\x00\x02");
        e.extend(b"\xaaattributes\x81\xacservice.name\xa8checkout");
        e.extend(b"\xaaschema_url\xa0");
        e.extend(b"\xa5scope\xdf\x00\x00\x00\x03");
        e.extend(b"\xa4name\xa6my.lib\xa7version\xa51.2.3");
        e.extend(b"\xaaattributes\x81\xaascope.attr\xc3");
        // record 1: 1700000000 = 0x6553f100, 123456789 = 0x075bcd15
        e.extend(b"\x92\x92\xd7\x00\x65\x53\xf1\x00\x07\x5b\xcd\x15");
        e.extend(b"\xdf\x00\x00\x00\x01\xa4otlp\xdf\x00\x00\x00\x08");
        e.extend(b"\xb2observed_timestamp\xcf");
        e.extend(1_700_000_000_200_000_000u64.to_be_bytes());
        e.extend(b"\xa9timestamp\xcf");
        e.extend(1_700_000_000_123_456_789u64.to_be_bytes());
        e.extend(b"\xafseverity_number\x09\xadseverity_text\xa4INFO");
        e.extend(b"\xaaattributes\x82\xb0http.status_code\xcd\x01\xf4\xa4user\xa5alice");
        e.extend(b"\xa8trace_id\xc4\x10");
        e.extend(&tid);
        e.extend(b"\xa7span_id\xc4\x08");
        e.extend(&sid);
        e.extend(b"\xabtrace_flags\x01");
        e.extend(b"\x81\xa3log\xaepayment failed");
        // record 2
        e.extend(b"\x92\x92\xd7\x00\x65\x53\xf1\x01\x00\x00\x00\x00");
        e.extend(b"\xdf\x00\x00\x00\x01\xa4otlp\xdf\x00\x00\x00\x03");
        e.extend(b"\xa9timestamp\xcf");
        e.extend(1_700_000_001_000_000_000u64.to_be_bytes());
        e.extend(b"\xafseverity_number\x11\xabtrace_flags\x00");
        e.extend(b"\x82\xa3msg\xaastructured\xa1n\x07");
        // group end
        e.extend(b"\x92\x92\xd7\x00\xff\xff\xff\xfe\x00\x00\x00\x00\xdf\x00\x00\x00\x00\xdf\x00\x00\x00\x00");

        let got = fluent_bit_chunk(&req, NOW);
        assert_eq!(hexs(&got), hexs(&e));

        // and the decoded view of §3
        let recs = records(&got);
        let g = recs[0].group.unwrap();
        let scope = g.attributes.get("scope").unwrap().as_map().unwrap();
        assert_eq!(scope.get("name").unwrap().as_str(), Some("my.lib"));
        assert_eq!(
            recs[1].event.body.get("msg").unwrap().as_str(),
            Some("structured")
        );
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn hexs(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn msgpack_widths_match_msgpack_c() {
        let enc = |f: &dyn Fn(&mut Mp)| {
            let mut m = Mp(Vec::new());
            f(&mut m);
            m.0
        };
        assert_eq!(enc(&|m| m.int(-32)), [0xe0]);
        assert_eq!(enc(&|m| m.int(-33)), [0xd0, 0xdf]);
        assert_eq!(enc(&|m| m.int(-129)), [0xd1, 0xff, 0x7f]);
        assert_eq!(enc(&|m| m.int(-32769)), [0xd2, 0xff, 0xff, 0x7f, 0xff]);
        assert_eq!(enc(&|m| m.int(127)), [0x7f]);
        assert_eq!(enc(&|m| m.int(128)), [0xcc, 0x80]);
        assert_eq!(
            enc(&|m| m.int(i64::from(i32::MAX))),
            [0xce, 0x7f, 0xff, 0xff, 0xff]
        );
        assert_eq!(enc(&|m| m.uint(1 << 32)), [0xcf, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(enc(&|m| m.str(&[b'x'; 32]))[..2], [0xd9, 32]);
        assert_eq!(enc(&|m| m.str(&[b'x'; 256]))[..3], [0xda, 1, 0]);
        assert_eq!(enc(&|m| m.bin(&[]))[..], [0xc4, 0]);
        assert_eq!(enc(&|m| m.map(16)), [0xde, 0, 16]);
        assert_eq!(enc(&|m| m.array(15)), [0x9f]);
        assert_eq!(enc(&|m| m.double(1.0))[0], 0xcb);
        // rmpv reads every value back
        let kvs: Vec<KeyValue> = (0..20)
            .map(|i| kv(&format!("k{i}"), AnyValue::int(i)))
            .collect();
        let b = enc(&|m| m.kvs(&kvs));
        let v = rmpv::decode::read_value(&mut &b[..]).unwrap();
        assert_eq!(v.as_map().unwrap().len(), 20);
    }

    #[test]
    fn decode_rejects_garbage() {
        let req = request(vec![rec(Some(AnyValue::string("x")))]);
        assert_eq!(decode_export_logs(&req.encode_to_vec()).unwrap(), req);
        assert!(decode_export_logs(b"\x0a\xff\xff").is_err());
    }

    fn post(
        stream: &mut TcpStream,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        // read one response (Content-Length framed)
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..p]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .unwrap()
                    .parse()
                    .unwrap();
                if buf.len() >= p + 4 + len {
                    let status = head[9..12].parse().unwrap();
                    let body = String::from_utf8_lossy(&buf[p + 4..p + 4 + len]).to_string();
                    return (status, body);
                }
            }
            let n = stream.read(&mut tmp).unwrap();
            assert!(n > 0, "connection closed early");
            buf.extend_from_slice(&tmp[..n]);
        }
    }

    #[test]
    fn http_input() {
        let input = OtlpLogsInput::start();
        assert!(input.url().ends_with("/v1/logs"));
        let req = request(vec![rec(Some(AnyValue::string("over http")))]);
        let pb = req.encode_to_vec();
        let mut s = TcpStream::connect(input.addr()).unwrap();
        let ct = ("Content-Type", "application/x-protobuf");
        // keep-alive: several requests on one connection
        assert_eq!(post(&mut s, "/v1/logs", &[ct], &pb), (201, String::new()));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&pb).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(
            post(
                &mut s,
                "/v1/logs",
                &[
                    ("Content-Type", "application/protobuf; x=y"),
                    ("Content-Encoding", "gzip")
                ],
                &gz
            ),
            (201, String::new())
        );
        assert_eq!(
            post(&mut s, "/v1/logs", &[ct], b"\x0a\xff\xff"),
            (400, DESERIALISATION_ERROR.to_string())
        );
        assert_eq!(post(&mut s, "/v1/traces", &[ct], &pb).0, 404);
        assert_eq!(
            post(
                &mut s,
                "/v1/logs",
                &[("Content-Type", "application/json")],
                b"{}"
            )
            .0,
            400
        );
        assert_eq!(
            post(&mut s, "/v1/logs", &[("Content-Type", "text/plain")], &pb).0,
            400
        );
        // an empty request is accepted and yields no chunk
        assert_eq!(post(&mut s, "/v1/logs", &[ct], b"\x0a\x00").0, 201);
        assert!(input.wait_for_chunks(2, Duration::from_secs(5)));
        let chunks = input.chunks();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0], chunks[1], "gzip or not, the same chunk");
        let recs = records(&chunks[0]);
        assert_eq!(
            recs[0].event.body.get("log").unwrap().as_str(),
            Some("over http")
        );
        assert_eq!(input.requests().len(), 3);
        let statuses: Vec<u16> = input.answered().iter().map(|a| a.status).collect();
        assert_eq!(statuses, [201, 201, 400, 404, 400, 400, 201]);
        assert_eq!(input.take_chunks().len(), 2);
        assert!(input.chunks().is_empty());
        drop(s);
        drop(input);
    }
}
