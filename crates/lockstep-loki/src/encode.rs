//! Wire encodings: protobuf + raw (block) snappy, and JSON.

use crate::model::{effective_labels, render_labels, Stream};
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

/// Protobuf body compressed with raw (block) snappy, for
/// `Content-Type: application/x-protobuf`.
pub fn encode_protobuf_snappy(streams: &[Stream]) -> Result<Vec<u8>, LokiError> {
    use prost::Message;
    let raw = to_push_request(streams).encode_to_vec();
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
