//! Builds flush chunks the way Fluent Bit encodes them.

use rmpv::Value;

/// Fluent Bit's EventTime: msgpack ext type 0 with u32 seconds and u32
/// nanoseconds, big-endian.
pub fn event_time(sec: u32, nsec: u32) -> Value {
    let mut payload = Vec::with_capacity(8);
    payload.extend_from_slice(&sec.to_be_bytes());
    payload.extend_from_slice(&nsec.to_be_bytes());
    Value::Ext(0, payload)
}

/// A chunk under construction: a concatenation of msgpack events.
#[derive(Debug, Default, Clone)]
pub struct ChunkBuilder {
    buf: Vec<u8>,
}

impl ChunkBuilder {
    /// An empty chunk.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(mut self, v: &Value) -> Self {
        rmpv::encode::write_value(&mut self.buf, v).expect("writing to a Vec cannot fail");
        self
    }

    /// A record in the current layout `[[EventTime, metadata], body]`.
    pub fn record(self, sec: u32, nsec: u32, metadata: Value, body: Value) -> Self {
        self.push(&Value::Array(vec![
            Value::Array(vec![event_time(sec, nsec), metadata]),
            body,
        ]))
    }

    /// A record in the legacy layout `[timestamp, body]`, with any timestamp value.
    pub fn legacy(self, timestamp: Value, body: Value) -> Self {
        self.push(&Value::Array(vec![timestamp, body]))
    }

    /// A group-start marker carrying group metadata and resource attributes.
    pub fn group_start(self, metadata: Value, attributes: Value) -> Self {
        self.record(0xFFFF_FFFF, 0, metadata, attributes)
    }

    /// A group-end marker.
    pub fn group_end(self) -> Self {
        self.record(0xFFFF_FFFE, 0, Value::Map(vec![]), Value::Map(vec![]))
    }

    /// Raw bytes appended as is (for malformed input).
    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// Current length in bytes (the offset the next event starts at).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The chunk bytes.
    pub fn build(self) -> Vec<u8> {
        self.buf
    }
}
