//! Wire encodings: protobuf + raw (block) snappy, and JSON.

use crate::model::{effective_labels, render_labels, secs_nanos, EntryView, Stream, StreamView};
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
fn str_field(s: &[u8]) -> usize {
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

/// Appends `v` as a protobuf varint (prost's encoding; lengths under 128 are most).
#[inline]
fn put_varint_raw(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
    } else {
        prost::encoding::encode_varint(v, out);
    }
}

fn put_len(out: &mut Vec<u8>, tag: u8, n: usize) {
    out.push(tag << 3 | 2);
    put_varint_raw(out, n as u64);
}

fn put_str(out: &mut Vec<u8>, tag: u8, s: &[u8]) {
    if !s.is_empty() {
        put_len(out, tag, s.len());
        out.extend_from_slice(s);
    }
}

fn put_varint(out: &mut Vec<u8>, tag: u8, v: u64) {
    if v != 0 {
        out.push(tag << 3);
        put_varint_raw(out, v);
    }
}

/// The `Timestamp` message's payload length, and its two fields as varints (`int64` and
/// `int32` both sign-extend to 64 bits on the wire).
fn timestamp(ts_ns: i128) -> (usize, u64, u64) {
    let (seconds, nanos) = secs_nanos(ts_ns);
    let (s, n) = (seconds as u64, i64::from(nanos) as u64);
    (varint_field(s) + varint_field(n), s, n)
}

/// The `EntryAdapter` payload length of `e`.
fn entry_len<E: EntryView>(e: &E) -> usize {
    let (ts, _, _) = timestamp(e.ts_ns());
    let mut n = len_field(ts) + str_field(e.line().as_bytes());
    for (name, value) in e.structured_metadata_bytes() {
        n += len_field(str_field(name) + str_field(value));
    }
    n
}

/// Appends the protobuf bytes of [`to_push_request`]`(streams)` to `out`, written straight
/// from the streams (owned, or views of entries held elsewhere): building the messages
/// first would copy every line and metadata pair once more, the largest cost of the
/// drain's encoding. The bytes are the same as prost's (tested against it).
pub fn encode_push_request<S: StreamView>(streams: &[S], out: &mut Vec<u8>) {
    // Every length first (a message's length precedes it), so that `out` grows once.
    let labels: Vec<String> = streams.iter().map(|s| render_labels(s.labels())).collect();
    let lens: Vec<usize> = streams
        .iter()
        .flat_map(|s| s.entries().iter().map(entry_len))
        .collect();
    let mut total = 0;
    let mut k = 0;
    let stream_lens: Vec<usize> = streams
        .iter()
        .zip(&labels)
        .map(|(s, l)| {
            let n = s.entries().len();
            let len = str_field(l.as_bytes())
                + lens[k..k + n].iter().map(|&n| len_field(n)).sum::<usize>();
            k += n;
            total += len_field(len);
            len
        })
        .collect();
    out.reserve(total);
    let mut lens = lens.iter();
    for ((s, l), &stream_len) in streams.iter().zip(&labels).zip(&stream_lens) {
        put_len(out, 1, stream_len);
        put_str(out, 1, l.as_bytes());
        for (e, &n) in s.entries().iter().zip(&mut lens) {
            put_len(out, 2, n);
            let (ts, secs, nanos) = timestamp(e.ts_ns());
            put_len(out, 1, ts);
            put_varint(out, 1, secs);
            put_varint(out, 2, nanos);
            put_str(out, 2, e.line().as_bytes());
            for (name, value) in e.structured_metadata_bytes() {
                put_len(out, 3, str_field(name) + str_field(value));
                put_str(out, 1, name);
                put_str(out, 2, value);
            }
        }
    }
}

/// Protobuf body compressed with raw (block) snappy, for
/// `Content-Type: application/x-protobuf`.
pub fn encode_protobuf_snappy<S: StreamView>(streams: &[S]) -> Result<Vec<u8>, LokiError> {
    encode_protobuf_snappy_with(streams, &mut EncodeScratch::default())
}

/// Buffers kept from one encoding to the next (the protobuf bytes, the compressor's
/// output and tables): a caller encoding push after push, as the drain does, then
/// neither allocates nor zeroes them again for every body. They keep the capacity of
/// the largest body encoded with them.
#[derive(Default)]
pub struct EncodeScratch {
    raw: Vec<u8>,
    compressed: Vec<u8>,
    encoder: Option<snap::raw::Encoder>,
}

impl std::fmt::Debug for EncodeScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodeScratch")
            .field("raw_capacity", &self.raw.capacity())
            .field("compressed_capacity", &self.compressed.capacity())
            .finish()
    }
}

/// [`encode_protobuf_snappy`] with buffers kept in `scratch`: the same bytes.
pub fn encode_protobuf_snappy_with<S: StreamView>(
    streams: &[S],
    scratch: &mut EncodeScratch,
) -> Result<Vec<u8>, LokiError> {
    let raw = &mut scratch.raw;
    raw.clear();
    encode_push_request(streams, raw);
    let err = |e: snap::Error, n: usize| LokiError::Encode {
        detail: format!("snappy: {e} ({n} bytes of protobuf)"),
    };
    // Only the part never written before is zeroed (0 when too big: `compress` says so).
    let max = snap::raw::max_compress_len(raw.len());
    if scratch.compressed.len() < max {
        scratch.compressed.resize(max, 0);
    }
    let n = scratch
        .encoder
        .get_or_insert_with(snap::raw::Encoder::new)
        .compress(raw, &mut scratch.compressed)
        .map_err(|e| err(e, raw.len()))?;
    Ok(scratch.compressed[..n].to_vec())
}

/// JSON body for `Content-Type: application/json`:
/// `{"streams":[{"stream":{..},"values":[["<ns>","line",{..}]]}]}`; the third value
/// element is present only when the entry has structured metadata.
pub fn to_json_value<S: StreamView>(streams: &[S]) -> serde_json::Value {
    use serde_json::{Map, Value};
    let streams: Vec<Value> = streams
        .iter()
        .map(|s| {
            let labels: Map<String, Value> = effective_labels(s.labels())
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            let values: Vec<Value> = s
                .entries()
                .iter()
                .map(|e| {
                    let mut v = vec![
                        Value::String(e.ts_ns().to_string()),
                        Value::String(e.line().to_string()),
                    ];
                    let sm: Map<String, Value> = e
                        .structured_metadata()
                        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                        .collect();
                    if e.structured_metadata().next().is_some() {
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
pub fn encode_json<S: StreamView>(streams: &[S]) -> Vec<u8> {
    // Serialising a `Value` built from strings cannot fail.
    serde_json::to_vec(&to_json_value(streams)).unwrap_or_default()
}
