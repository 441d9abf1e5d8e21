//! Wire encodings: protobuf + raw (block) snappy, and JSON.

use crate::model::{effective_labels, render_labels, Entry, Stream};
use crate::LokiError;

/// `google.protobuf.Timestamp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds in `0..1_000_000_000`.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `logproto.PushRequest` (only the fields a client sets).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    /// Streams of this push.
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `logproto.StreamAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// Label set in text form, e.g. `{app="x"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    /// Entries.
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
}

/// `logproto.EntryAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    /// Entry time.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    /// Log line.
    #[prost(string, tag = "2")]
    pub line: String,
    /// Structured metadata.
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

/// `logproto.LabelPairAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPairAdapter {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// Build the protobuf message for `streams`.
pub fn to_push_request(streams: &[Stream]) -> PushRequest {
    PushRequest {
        streams: streams
            .iter()
            .map(|s| StreamAdapter {
                labels: render_labels(&s.labels),
                entries: s
                    .entries
                    .iter()
                    .map(|e| {
                        let (seconds, nanos) = e.secs_nanos();
                        EntryAdapter {
                            timestamp: Some(Timestamp { seconds, nanos }),
                            line: e.line.clone(),
                            structured_metadata: e
                                .structured_metadata
                                .iter()
                                .map(|(n, v)| LabelPairAdapter {
                                    name: n.clone(),
                                    value: v.clone(),
                                })
                                .collect(),
                        }
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Length of a protobuf `LEN` field (key of a tag below 16, length, payload) of `n`
/// payload bytes.
fn len_field(n: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(n as u64) + n
}

/// Length of a proto3 string field: nothing when empty.
fn str_field(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        len_field(s.len())
    }
}

/// Length of a proto3 varint field: nothing when zero.
fn varint_field(v: u64) -> usize {
    if v == 0 {
        0
    } else {
        1 + prost::encoding::encoded_len_varint(v)
    }
}

fn put_len(out: &mut Vec<u8>, tag: u8, n: usize) {
    out.push(tag << 3 | 2);
    prost::encoding::encode_varint(n as u64, out);
}

fn put_str(out: &mut Vec<u8>, tag: u8, s: &str) {
    if !s.is_empty() {
        put_len(out, tag, s.len());
        out.extend_from_slice(s.as_bytes());
    }
}

fn put_varint(out: &mut Vec<u8>, tag: u8, v: u64) {
    if v != 0 {
        out.push(tag << 3);
        prost::encoding::encode_varint(v, out);
    }
}

/// The `Timestamp` message's payload length, and its two fields as varints (`int64` and
/// `int32` both sign-extend to 64 bits on the wire).
fn timestamp(e: &Entry) -> (usize, u64, u64) {
    let (seconds, nanos) = e.secs_nanos();
    let (s, n) = (seconds as u64, i64::from(nanos) as u64);
    (varint_field(s) + varint_field(n), s, n)
}

/// The `EntryAdapter` payload length of `e`.
fn entry_len(e: &Entry) -> usize {
    let (ts, _, _) = timestamp(e);
    let mut n = len_field(ts) + str_field(&e.line);
    for (name, value) in &e.structured_metadata {
        n += len_field(str_field(name) + str_field(value));
    }
    n
}

/// Appends the protobuf bytes of [`to_push_request`]`(streams)` to `out`, written straight
/// from the streams: building the messages first would copy every line and metadata
/// pair once more, the largest cost of the drain's encoding. The bytes are the same as
/// prost's (tested against it).
pub fn encode_push_request(streams: &[Stream], out: &mut Vec<u8>) {
    let mut lens: Vec<usize> = Vec::new();
    for s in streams {
        let labels = render_labels(&s.labels);
        lens.clear();
        lens.extend(s.entries.iter().map(entry_len));
        let stream_len = str_field(&labels) + lens.iter().map(|&n| len_field(n)).sum::<usize>();
        put_len(out, 1, stream_len);
        put_str(out, 1, &labels);
        for (e, &n) in s.entries.iter().zip(&lens) {
            put_len(out, 2, n);
            let (ts, secs, nanos) = timestamp(e);
            put_len(out, 1, ts);
            put_varint(out, 1, secs);
            put_varint(out, 2, nanos);
            put_str(out, 2, &e.line);
            for (name, value) in &e.structured_metadata {
                put_len(out, 3, str_field(name) + str_field(value));
                put_str(out, 1, name);
                put_str(out, 2, value);
            }
        }
    }
}

/// Protobuf body compressed with raw (block) snappy, for
/// `Content-Type: application/x-protobuf`.
pub fn encode_protobuf_snappy(streams: &[Stream]) -> Result<Vec<u8>, LokiError> {
    let mut raw = Vec::new();
    encode_push_request(streams, &mut raw);
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .map_err(|e| LokiError::Encode {
            detail: format!("snappy: {e} ({} bytes of protobuf)", raw.len()),
        })
}

/// JSON body for `Content-Type: application/json`:
/// `{"streams":[{"stream":{..},"values":[["<ns>","line",{..}]]}]}`; the third value
/// element is present only when the entry has structured metadata.
pub fn to_json_value(streams: &[Stream]) -> serde_json::Value {
    use serde_json::{Map, Value};
    let streams: Vec<Value> = streams
        .iter()
        .map(|s| {
            let labels: Map<String, Value> = effective_labels(&s.labels)
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            let values: Vec<Value> = s
                .entries
                .iter()
                .map(|e| {
                    let mut v = vec![
                        Value::String(e.ts_ns.to_string()),
                        Value::String(e.line.clone()),
                    ];
                    if !e.structured_metadata.is_empty() {
                        let sm: Map<String, Value> = e
                            .structured_metadata
                            .iter()
                            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                            .collect();
                        v.push(Value::Object(sm));
                    }
                    Value::Array(v)
                })
                .collect();
            let mut m = Map::new();
            m.insert("stream".into(), Value::Object(labels));
            m.insert("values".into(), Value::Array(values));
            Value::Object(m)
        })
        .collect();
    let mut root = Map::new();
    root.insert("streams".into(), Value::Array(streams));
    Value::Object(root)
}

/// JSON body bytes.
pub fn encode_json(streams: &[Stream]) -> Vec<u8> {
    // Serialising a `Value` built from strings cannot fail.
    serde_json::to_vec(&to_json_value(streams)).unwrap_or_default()
}
