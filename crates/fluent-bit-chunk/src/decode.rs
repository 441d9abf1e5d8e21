//! Zero-copy decoder for the chunk Fluent Bit passes to `FLBPluginFlushCtx`.
//!
//! A chunk is a concatenation of msgpack events in one of two layouts:
//! `[[timestamp, metadata_map], body_map]` (current) or `[timestamp, body_map]`
//! (older producers). The timestamp is msgpack ext type 0 of 8 bytes (u32
//! seconds and u32 nanoseconds, big-endian), a non-negative integer (seconds)
//! or a non-negative float. Group markers are events whose ext timestamp has
//! seconds `0xFFFFFFFF` (group start; metadata and body carry the group's
//! metadata and resource attributes) or `0xFFFFFFFE` (group end).
//!
//! Invariants:
//! - pure and safe; nothing is copied: strings, binaries and nested values
//!   borrow from the chunk;
//! - every event is fully validated (all nested values walked) before it is
//!   yielded, so the views ([`MapView`], [`ArrayView`]) iterate infallibly;
//! - no recursion anywhere: validation and iteration use constant stack, so a
//!   hostile nesting depth cannot overflow Fluent Bit's small flush stack;
//! - a malformed event yields one [`DecodeError`] naming the byte offset of the
//!   event and of the offending item, and the iterator stops there.

#![deny(unsafe_code)]

use std::borrow::Cow;
use std::fmt;

use rmp::Marker;

/// Seconds value of a group-start marker's timestamp.
pub const GROUP_START_SECONDS: u32 = 0xFFFF_FFFF;
/// Seconds value of a group-end marker's timestamp.
pub const GROUP_END_SECONDS: u32 = 0xFFFF_FFFE;

/// Why a chunk could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The chunk ends inside an item.
    #[error("truncated input: {needed} bytes needed, {available} left")]
    UnexpectedEof {
        /// Bytes the item needs from its offset.
        needed: usize,
        /// Bytes left from that offset.
        available: usize,
    },
    /// The never-used msgpack marker 0xc1.
    #[error("reserved msgpack marker 0xc1")]
    ReservedMarker,
    /// The event is not an array.
    #[error("event is {found}, expected a 2-element array")]
    EventNotArray {
        /// What was found.
        found: &'static str,
    },
    /// The event array does not have 2 elements.
    #[error("event array has {len} elements, expected 2")]
    EventArrayLen {
        /// Its length.
        len: u32,
    },
    /// The `[timestamp, metadata]` header does not have 2 elements.
    #[error("event header array has {len} elements, expected [timestamp, metadata]")]
    HeaderArrayLen {
        /// Its length.
        len: u32,
    },
    /// The timestamp has a type that is not ext, integer or float.
    #[error("timestamp is {found}, expected EventTime (ext 0), integer or float")]
    TimestampType {
        /// What was found.
        found: &'static str,
    },
    /// An ext timestamp that is not type 0 with 8 bytes.
    #[error("timestamp is ext type {ext_type} of {len} bytes, expected ext type 0 of 8 bytes")]
    TimestampExt {
        /// Its ext type.
        ext_type: i8,
        /// Its payload length.
        len: u32,
    },
    /// A negative integer timestamp (Fluent Bit rejects these too).
    #[error("timestamp is the negative integer {value}")]
    NegativeTimestamp {
        /// The value.
        value: i64,
    },
    /// A float timestamp that is negative, not finite or too large.
    #[error("timestamp is the float {value}, expected a finite non-negative number")]
    BadFloatTimestamp {
        /// The value.
        value: f64,
    },
    /// An EventTime whose nanoseconds are 1e9 or more.
    #[error("timestamp nanoseconds {nsec} out of range")]
    NanosecondsOutOfRange {
        /// The value.
        nsec: u32,
    },
    /// The metadata is not a map.
    #[error("metadata is {found}, expected a map")]
    MetadataNotMap {
        /// What was found.
        found: &'static str,
    },
    /// The body is not a map.
    #[error("body is {found}, expected a map")]
    BodyNotMap {
        /// What was found.
        found: &'static str,
    },
}

/// A malformed chunk: what went wrong and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("malformed chunk: {kind} at byte offset {offset} (event {index} starting at byte offset {event_offset})")]
pub struct DecodeError {
    /// Byte offset of the offending item within the chunk.
    pub offset: usize,
    /// Byte offset where the offending event starts.
    pub event_offset: usize,
    /// Zero-based index of the offending event.
    pub index: usize,
    /// What went wrong.
    pub kind: DecodeErrorKind,
}

/// An event's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub sec: u64,
    /// Nanoseconds within the second, below 1e9.
    pub nsec: u32,
}

impl Timestamp {
    /// Nanoseconds since the Unix epoch.
    pub fn unix_nanos(self) -> u128 {
        u128::from(self.sec) * 1_000_000_000 + u128::from(self.nsec)
    }
}

/// What an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A log record.
    Record,
    /// Start of an OTLP resource/scope group: `metadata` and `body` carry the
    /// group's metadata and resource attributes.
    GroupStart,
    /// End of the current group.
    GroupEnd,
}

/// Which of the two event layouts an event used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `[[timestamp, metadata], body]`.
    WithMetadata,
    /// `[timestamp, body]`: metadata reads as an empty map.
    Legacy,
}

/// One decoded event, borrowing from the chunk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event<'a> {
    /// Record or group marker.
    pub kind: EventKind,
    /// The event's layout.
    pub layout: Layout,
    /// The event's time.
    pub timestamp: Timestamp,
    /// The metadata map (empty for [`Layout::Legacy`]).
    pub metadata: MapView<'a>,
    /// The body map.
    pub body: MapView<'a>,
    /// Byte offset of the event in the chunk.
    pub offset: usize,
    /// The event's raw msgpack bytes.
    pub raw: &'a [u8],
}

/// The group a record belongs to: the group-start marker's contents.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Group<'a> {
    /// The group-start marker's metadata.
    pub metadata: MapView<'a>,
    /// The group-start marker's body (resource attributes).
    pub attributes: MapView<'a>,
    /// Byte offset of the group-start marker.
    pub offset: usize,
}

/// A record together with its enclosing group, if any.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record<'a> {
    /// The record (never a group marker).
    pub event: Event<'a>,
    /// The group opened by the latest group-start marker not yet closed.
    pub group: Option<Group<'a>>,
}

/// The bytes of one flush, not yet decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    data: &'a [u8],
}

impl<'a> Chunk<'a> {
    /// Wraps raw chunk bytes.
    pub fn new(data: &'a [u8]) -> Self {
        Chunk { data }
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the chunk has no bytes (and so no events).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Iterates over all events, group markers included.
    pub fn events(&self) -> Events<'a> {
        Events {
            data: self.data,
            pos: 0,
            index: 0,
            failed: false,
        }
    }

    /// Iterates over records only, each with its enclosing group.
    pub fn records(&self) -> Records<'a> {
        Records {
            events: self.events(),
            group: None,
        }
    }

    /// Validates the whole chunk; returns the number of events (markers
    /// included). Use it before acting on any event to make a flush all or
    /// nothing.
    pub fn validate(&self) -> Result<usize, DecodeError> {
        let mut n = 0;
        for ev in self.events() {
            ev?;
            n += 1;
        }
        Ok(n)
    }
}

/// Iterator over a chunk's events; stops after the first error.
#[derive(Debug, Clone)]
pub struct Events<'a> {
    data: &'a [u8],
    pos: usize,
    index: usize,
    failed: bool,
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<Event<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let start = self.pos;
        match decode_event(self.data, start) {
            Ok((event, end)) => {
                self.pos = end;
                self.index += 1;
                Some(Ok(event))
            }
            Err((offset, kind)) => {
                self.failed = true;
                Some(Err(DecodeError {
                    offset,
                    event_offset: start,
                    index: self.index,
                    kind,
                }))
            }
        }
    }
}

impl std::iter::FusedIterator for Events<'_> {}

/// Iterator over a chunk's records with their groups; stops after the first error.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    events: Events<'a>,
    group: Option<Group<'a>>,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let event = match self.events.next()? {
                Ok(event) => event,
                Err(e) => return Some(Err(e)),
            };
            match event.kind {
                EventKind::GroupStart => {
                    self.group = Some(Group {
                        metadata: event.metadata,
                        attributes: event.body,
                        offset: event.offset,
                    })
                }
                EventKind::GroupEnd => self.group = None,
                EventKind::Record => {
                    return Some(Ok(Record {
                        event,
                        group: self.group,
                    }))
                }
            }
        }
    }
}

pub(crate) type Fail = (usize, DecodeErrorKind);

/// The decoded head of one msgpack item.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Head {
    Nil,
    Bool(bool),
    UInt(u64),
    Int(i64),
    F32(f32),
    F64(f64),
    Str(u32),
    Bin(u32),
    Array(u32),
    Map(u32),
    Ext(i8, u32),
}

impl Head {
    fn name(self) -> &'static str {
        match self {
            Head::Nil => "nil",
            Head::Bool(_) => "a boolean",
            Head::UInt(_) | Head::Int(_) => "an integer",
            Head::F32(_) | Head::F64(_) => "a float",
            Head::Str(_) => "a string",
            Head::Bin(_) => "a binary",
            Head::Array(_) => "an array",
            Head::Map(_) => "a map",
            Head::Ext(..) => "an ext",
        }
    }
}

/// A position in the chunk; reads fail with the offset of the item.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    fn take(&mut self, item_start: usize, n: usize) -> Result<&'a [u8], Fail> {
        let available = self.data.len() - self.pos;
        if n > available {
            let needed = self.pos - item_start + n;
            let available = self.data.len() - item_start;
            return Err((
                item_start,
                DecodeErrorKind::UnexpectedEof { needed, available },
            ));
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn be<const N: usize>(&mut self, item_start: usize) -> Result<[u8; N], Fail> {
        let bytes = self.take(item_start, N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Reads one item's head (marker plus fixed-size fields, not the payload).
    pub(crate) fn head(&mut self) -> Result<(usize, Head), Fail> {
        let start = self.pos;
        let [byte] = self.be::<1>(start)?;
        let head = match Marker::from_u8(byte) {
            Marker::FixPos(v) => Head::UInt(u64::from(v)),
            Marker::FixNeg(v) => Head::Int(i64::from(v)),
            Marker::Null => Head::Nil,
            Marker::True => Head::Bool(true),
            Marker::False => Head::Bool(false),
            Marker::U8 => Head::UInt(u64::from(u8::from_be_bytes(self.be(start)?))),
            Marker::U16 => Head::UInt(u64::from(u16::from_be_bytes(self.be(start)?))),
            Marker::U32 => Head::UInt(u64::from(u32::from_be_bytes(self.be(start)?))),
            Marker::U64 => Head::UInt(u64::from_be_bytes(self.be(start)?)),
            Marker::I8 => int_head(i64::from(i8::from_be_bytes(self.be(start)?))),
            Marker::I16 => int_head(i64::from(i16::from_be_bytes(self.be(start)?))),
            Marker::I32 => int_head(i64::from(i32::from_be_bytes(self.be(start)?))),
            Marker::I64 => int_head(i64::from_be_bytes(self.be(start)?)),
            Marker::F32 => Head::F32(f32::from_be_bytes(self.be(start)?)),
            Marker::F64 => Head::F64(f64::from_be_bytes(self.be(start)?)),
            Marker::FixStr(n) => Head::Str(u32::from(n)),
            Marker::Str8 => Head::Str(u32::from(u8::from_be_bytes(self.be(start)?))),
            Marker::Str16 => Head::Str(u32::from(u16::from_be_bytes(self.be(start)?))),
            Marker::Str32 => Head::Str(u32::from_be_bytes(self.be(start)?)),
            Marker::Bin8 => Head::Bin(u32::from(u8::from_be_bytes(self.be(start)?))),
            Marker::Bin16 => Head::Bin(u32::from(u16::from_be_bytes(self.be(start)?))),
            Marker::Bin32 => Head::Bin(u32::from_be_bytes(self.be(start)?)),
            Marker::FixArray(n) => Head::Array(u32::from(n)),
            Marker::Array16 => Head::Array(u32::from(u16::from_be_bytes(self.be(start)?))),
            Marker::Array32 => Head::Array(u32::from_be_bytes(self.be(start)?)),
            Marker::FixMap(n) => Head::Map(u32::from(n)),
            Marker::Map16 => Head::Map(u32::from(u16::from_be_bytes(self.be(start)?))),
            Marker::Map32 => Head::Map(u32::from_be_bytes(self.be(start)?)),
            Marker::FixExt1 => Head::Ext(i8::from_be_bytes(self.be(start)?), 1),
            Marker::FixExt2 => Head::Ext(i8::from_be_bytes(self.be(start)?), 2),
            Marker::FixExt4 => Head::Ext(i8::from_be_bytes(self.be(start)?), 4),
            Marker::FixExt8 => Head::Ext(i8::from_be_bytes(self.be(start)?), 8),
            Marker::FixExt16 => Head::Ext(i8::from_be_bytes(self.be(start)?), 16),
            Marker::Ext8 => {
                let len = u32::from(u8::from_be_bytes(self.be(start)?));
                Head::Ext(i8::from_be_bytes(self.be(start)?), len)
            }
            Marker::Ext16 => {
                let len = u32::from(u16::from_be_bytes(self.be(start)?));
                Head::Ext(i8::from_be_bytes(self.be(start)?), len)
            }
            Marker::Ext32 => {
                let len = u32::from_be_bytes(self.be(start)?);
                Head::Ext(i8::from_be_bytes(self.be(start)?), len)
            }
            Marker::Reserved => return Err((start, DecodeErrorKind::ReservedMarker)),
        };
        Ok((start, head))
    }

    /// Reads one complete item and returns its start and payload (for
    /// str/bin/ext); containers are walked without recursion.
    pub(crate) fn skip_value(&mut self) -> Result<(), Fail> {
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            let (start, head) = self.head()?;
            match head {
                Head::Str(n) | Head::Bin(n) | Head::Ext(_, n) => {
                    self.take(start, n as usize)?;
                }
                Head::Array(n) => pending += u64::from(n),
                Head::Map(n) => pending += 2 * u64::from(n),
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads a map item completely and returns its view.
    fn map_view(
        &mut self,
        not_map: fn(&'static str) -> DecodeErrorKind,
    ) -> Result<MapView<'a>, Fail> {
        let start = self.pos;
        let mut probe = *self;
        let (_, head) = probe.head()?;
        let Head::Map(len) = head else {
            return Err((start, not_map(head.name())));
        };
        self.skip_value()?;
        Ok(MapView {
            bytes: &self.data[start..self.pos],
            len,
            offset: start,
        })
    }
}

fn int_head(v: i64) -> Head {
    if v >= 0 {
        Head::UInt(v as u64)
    } else {
        Head::Int(v)
    }
}

fn timestamp(r: &mut Reader<'_>) -> Result<(Timestamp, EventKind), Fail> {
    let (start, head) = r.head()?;
    let ts = match head {
        Head::Ext(0, 8) => {
            let sec = u32::from_be_bytes(r.be(start)?);
            let nsec = u32::from_be_bytes(r.be(start)?);
            let kind = match sec {
                GROUP_START_SECONDS => EventKind::GroupStart,
                GROUP_END_SECONDS => EventKind::GroupEnd,
                _ => EventKind::Record,
            };
            if nsec >= 1_000_000_000 {
                return Err((start, DecodeErrorKind::NanosecondsOutOfRange { nsec }));
            }
            return Ok((
                Timestamp {
                    sec: u64::from(sec),
                    nsec,
                },
                kind,
            ));
        }
        Head::Ext(ext_type, len) => {
            return Err((start, DecodeErrorKind::TimestampExt { ext_type, len }));
        }
        Head::UInt(sec) => Timestamp { sec, nsec: 0 },
        Head::Int(value) => return Err((start, DecodeErrorKind::NegativeTimestamp { value })),
        Head::F32(f) => float_timestamp(start, f64::from(f))?,
        Head::F64(f) => float_timestamp(start, f)?,
        other => {
            return Err((
                start,
                DecodeErrorKind::TimestampType {
                    found: other.name(),
                },
            ))
        }
    };
    Ok((ts, EventKind::Record))
}

fn float_timestamp(start: usize, value: f64) -> Result<Timestamp, Fail> {
    // 2^64 is exactly representable; anything at or above it does not fit.
    if !value.is_finite() || !(0.0..18_446_744_073_709_551_616.0).contains(&value) {
        return Err((start, DecodeErrorKind::BadFloatTimestamp { value }));
    }
    let sec = value.trunc();
    let nsec = ((value - sec) * 1e9) as u32;
    Ok(Timestamp {
        sec: sec as u64,
        nsec: nsec.min(999_999_999),
    })
}

/// Decodes the event at `start`; returns it and the offset after it.
fn decode_event(data: &[u8], start: usize) -> Result<(Event<'_>, usize), Fail> {
    let mut r = Reader { data, pos: start };
    let (_, head) = r.head()?;
    match head {
        Head::Array(2) => {}
        Head::Array(len) => return Err((start, DecodeErrorKind::EventArrayLen { len })),
        other => {
            return Err((
                start,
                DecodeErrorKind::EventNotArray {
                    found: other.name(),
                },
            ))
        }
    }
    let mut probe = r;
    let (header_start, header) = probe.head()?;
    let (layout, (timestamp, kind), metadata) = match header {
        Head::Array(2) => {
            r = probe;
            let ts = timestamp(&mut r)?;
            let metadata = r.map_view(|found| DecodeErrorKind::MetadataNotMap { found })?;
            (Layout::WithMetadata, ts, metadata)
        }
        Head::Array(len) => return Err((header_start, DecodeErrorKind::HeaderArrayLen { len })),
        _ => (Layout::Legacy, timestamp(&mut r)?, MapView::empty()),
    };
    let body = r.map_view(|found| DecodeErrorKind::BodyNotMap { found })?;
    let event = Event {
        kind,
        layout,
        timestamp,
        metadata,
        body,
        offset: start,
        raw: &data[start..r.pos],
    };
    Ok((event, r.pos))
}

/// Reads one already-validated value at `r`, returning a view of it.
pub(crate) fn read_value<'a>(r: &mut Reader<'a>) -> Option<ValueRef<'a>> {
    let (start, head) = r.head().ok()?;
    let (whole, len) = match head {
        Head::Array(len) | Head::Map(len) => {
            let mut whole = Reader {
                data: r.data,
                pos: start,
            };
            whole.skip_value().ok()?;
            (whole, len)
        }
        _ => return scalar(r, start, head),
    };
    let bytes = &r.data[start..whole.pos];
    *r = whole;
    Some(match head {
        Head::Array(_) => ValueRef::Array(ArrayView {
            bytes,
            len,
            offset: start,
        }),
        _ => ValueRef::Map(MapView {
            bytes,
            len,
            offset: start,
        }),
    })
}

/// The value of a non-container item whose head (at `start`) was just read: its
/// payload is taken for str/bin/ext. `None` for a container, or past the end.
fn scalar<'a>(r: &mut Reader<'a>, start: usize, head: Head) -> Option<ValueRef<'a>> {
    Some(match head {
        Head::Nil => ValueRef::Nil,
        Head::Bool(b) => ValueRef::Bool(b),
        Head::UInt(v) => ValueRef::UInt(v),
        Head::Int(v) => ValueRef::Int(v),
        Head::F32(v) => ValueRef::F32(v),
        Head::F64(v) => ValueRef::F64(v),
        Head::Str(n) => ValueRef::Str(RawStr(r.take(start, n as usize).ok()?)),
        Head::Bin(n) => ValueRef::Bin(r.take(start, n as usize).ok()?),
        Head::Ext(t, n) => ValueRef::Ext(t, r.take(start, n as usize).ok()?),
        Head::Array(_) | Head::Map(_) => return None,
    })
}

/// One item of msgpack read as a token: a scalar with its payload, or the head of a
/// container (its length; its items follow as further tokens).
#[derive(Debug, Clone, Copy)]
pub enum Token<'a> {
    /// Nil, bool, number, str, bin or ext (never `ValueRef::Array`/`Map`).
    Scalar(ValueRef<'a>),
    /// A map of this many key/value pairs.
    Map(u32),
    /// An array of this many items.
    Array(u32),
}

/// A forward-only token reader over msgpack bytes (a [`MapView::raw`], say), for
/// walking a value of any depth in one pass with the caller's own stack. Every read
/// is bounds-checked: `None` past the end or at a reserved marker.
#[derive(Debug, Clone, Copy)]
pub struct Tokens<'a>(Reader<'a>);

impl<'a> Tokens<'a> {
    /// Tokens of `bytes`, from the start.
    pub fn new(bytes: &'a [u8]) -> Self {
        Tokens(Reader::new(bytes))
    }

    /// The next token.
    pub fn next_token(&mut self) -> Option<Token<'a>> {
        let (start, head) = self.0.head().ok()?;
        match head {
            Head::Map(n) => Some(Token::Map(n)),
            Head::Array(n) => Some(Token::Array(n)),
            _ => scalar(&mut self.0, start, head).map(Token::Scalar),
        }
    }

    /// Skips the items of a container whose head `tok` was just read (nothing for a
    /// scalar).
    pub fn skip_contents(&mut self, tok: &Token<'_>) -> Option<()> {
        let items = match *tok {
            Token::Map(n) => 2 * u64::from(n),
            Token::Array(n) => u64::from(n),
            Token::Scalar(_) => 0,
        };
        for _ in 0..items {
            self.0.skip_value().ok()?;
        }
        Some(())
    }

    /// Skips one whole item (without recursion).
    pub fn skip_value(&mut self) -> Option<()> {
        self.0.skip_value().ok()
    }
}

/// A msgpack string: bytes that are usually, but not always, UTF-8.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawStr<'a>(pub &'a [u8]);

impl<'a> RawStr<'a> {
    /// The bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// The string, if it is valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.0).ok()
    }

    /// The string with invalid UTF-8 replaced by U+FFFD.
    pub fn to_str_lossy(&self) -> Cow<'a, str> {
        String::from_utf8_lossy(self.0)
    }
}

impl fmt::Debug for RawStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_str_lossy(), f)
    }
}

impl PartialEq<str> for RawStr<'_> {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for RawStr<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

/// A view of one msgpack value inside a chunk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// nil
    Nil,
    /// true / false
    Bool(bool),
    /// A non-negative integer.
    UInt(u64),
    /// A negative integer.
    Int(i64),
    /// A 32-bit float.
    F32(f32),
    /// A 64-bit float.
    F64(f64),
    /// A string.
    Str(RawStr<'a>),
    /// A binary.
    Bin(&'a [u8]),
    /// An array.
    Array(ArrayView<'a>),
    /// A map.
    Map(MapView<'a>),
    /// An ext value: type and payload.
    Ext(i8, &'a [u8]),
}

impl<'a> ValueRef<'a> {
    /// The string, if this is a valid UTF-8 string.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            ValueRef::Str(s) => s.as_str(),
            _ => None,
        }
    }

    /// The integer, if this is an integer that fits in i64.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            ValueRef::Int(v) => Some(v),
            ValueRef::UInt(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The integer, if this is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            ValueRef::UInt(v) => Some(v),
            _ => None,
        }
    }

    /// The number as f64, if this is an integer or a float.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            ValueRef::F32(v) => Some(f64::from(v)),
            ValueRef::F64(v) => Some(v),
            ValueRef::UInt(v) => Some(v as f64),
            ValueRef::Int(v) => Some(v as f64),
            _ => None,
        }
    }

    /// The map, if this is a map.
    pub fn as_map(&self) -> Option<MapView<'a>> {
        match self {
            ValueRef::Map(m) => Some(*m),
            _ => None,
        }
    }

    /// The array, if this is an array.
    pub fn as_array(&self) -> Option<ArrayView<'a>> {
        match self {
            ValueRef::Array(a) => Some(*a),
            _ => None,
        }
    }
}

/// A validated msgpack map inside a chunk. Iteration is infallible.
///
/// Iterating yields nested containers as views whose extent is found by
/// walking them, so visiting every value of a tree of depth `d` through
/// nested views costs O(size × d); [`crate::json`] renders in one linear pass.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MapView<'a> {
    bytes: &'a [u8],
    len: u32,
    offset: usize,
}

const EMPTY_MAP: &[u8] = &[0x80];

impl<'a> MapView<'a> {
    /// An empty map (the metadata of a legacy-layout event).
    pub fn empty() -> MapView<'static> {
        MapView {
            bytes: EMPTY_MAP,
            len: 0,
            offset: 0,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The map's raw msgpack bytes.
    pub fn raw(&self) -> &'a [u8] {
        self.bytes
    }

    /// Byte offset of the map in the chunk (0 for [`MapView::empty`]).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Iterates over `(key, value)` pairs in encoded order.
    pub fn iter(&self) -> MapIter<'a> {
        let mut r = Reader {
            data: self.bytes,
            pos: 0,
        };
        let ok = r.head().is_ok();
        MapIter {
            r,
            remaining: if ok { self.len } else { 0 },
        }
    }

    /// The value of the first entry whose key is the string `key`.
    pub fn get(&self, key: &str) -> Option<ValueRef<'a>> {
        self.iter()
            .find(|(k, _)| matches!(k, ValueRef::Str(s) if *s == key))
            .map(|(_, v)| v)
    }
}

impl fmt::Debug for MapView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for MapView<'a> {
    type Item = (ValueRef<'a>, ValueRef<'a>);
    type IntoIter = MapIter<'a>;
    fn into_iter(self) -> MapIter<'a> {
        self.iter()
    }
}

/// Iterator over a [`MapView`].
#[derive(Debug, Clone)]
pub struct MapIter<'a> {
    r: Reader<'a>,
    remaining: u32,
}

impl<'a> Iterator for MapIter<'a> {
    type Item = (ValueRef<'a>, ValueRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let k = read_value(&mut self.r);
        let v = read_value(&mut self.r);
        match (k, v) {
            (Some(k), Some(v)) => Some((k, v)),
            _ => {
                self.remaining = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining as usize))
    }
}

/// A validated msgpack array inside a chunk. Iteration is infallible.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ArrayView<'a> {
    bytes: &'a [u8],
    len: u32,
    offset: usize,
}

impl<'a> ArrayView<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The array's raw msgpack bytes.
    pub fn raw(&self) -> &'a [u8] {
        self.bytes
    }

    /// Byte offset of the array in the chunk.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Iterates over the elements.
    pub fn iter(&self) -> ArrayIter<'a> {
        let mut r = Reader {
            data: self.bytes,
            pos: 0,
        };
        let ok = r.head().is_ok();
        ArrayIter {
            r,
            remaining: if ok { self.len } else { 0 },
        }
    }
}

impl fmt::Debug for ArrayView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for ArrayView<'a> {
    type Item = ValueRef<'a>;
    type IntoIter = ArrayIter<'a>;
    fn into_iter(self) -> ArrayIter<'a> {
        self.iter()
    }
}

/// Iterator over an [`ArrayView`].
#[derive(Debug, Clone)]
pub struct ArrayIter<'a> {
    r: Reader<'a>,
    remaining: u32,
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = ValueRef<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let v = read_value(&mut self.r);
        if v.is_none() {
            self.remaining = 0;
        }
        v
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining as usize))
    }
}
