//! Log entries, streams, label rendering and batch grouping.

use std::collections::BTreeMap;

/// One log line bound for Loki.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Timestamp in nanoseconds since the Unix epoch (may be negative).
    pub ts_ns: i128,
    /// The log line. `String` guarantees valid UTF-8, which Loki itself does not check.
    pub line: String,
    /// Structured metadata (name, value) pairs, sent in order. High-cardinality values
    /// (trace ids, request ids) belong here, never in labels.
    pub structured_metadata: Vec<(String, String)>,
}

impl Entry {
    /// Entry without structured metadata.
    pub fn new(ts_ns: i128, line: impl Into<String>) -> Self {
        Self {
            ts_ns,
            line: line.into(),
            structured_metadata: Vec::new(),
        }
    }

    /// Split the timestamp into (seconds, nanoseconds in `0..1e9`) as
    /// `google.protobuf.Timestamp` wants it. Saturates outside the `i64` seconds range.
    pub fn secs_nanos(&self) -> (i64, i32) {
        secs_nanos(self.ts_ns)
    }
}

/// [`Entry::secs_nanos`] of a timestamp in nanoseconds.
pub fn secs_nanos(ts_ns: i128) -> (i64, i32) {
    let secs = ts_ns.div_euclid(1_000_000_000);
    let nanos = ts_ns.rem_euclid(1_000_000_000) as i32;
    let secs = secs.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
    (secs, nanos)
}

/// An entry as the encoders read it: an [`Entry`], or a view of one held elsewhere (the
/// drain reads its entries in place from the queue's bytes, without owning them).
pub trait EntryView {
    /// Timestamp in nanoseconds since the Unix epoch.
    fn ts_ns(&self) -> i128;
    /// The log line.
    fn line(&self) -> &str;
    /// Structured metadata (name, value) pairs, in order. Called more than once per
    /// encoding (lengths first): it must yield the same pairs each time.
    fn structured_metadata(&self) -> impl Iterator<Item = (&str, &str)>;
    /// The same pairs as [`EntryView::structured_metadata`], as their UTF-8 bytes: what
    /// the protobuf encoding reads, so that a view of bytes already checked once need
    /// not check them again at every pass.
    fn structured_metadata_bytes(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.structured_metadata()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
    }
}

impl EntryView for Entry {
    fn ts_ns(&self) -> i128 {
        self.ts_ns
    }
    fn line(&self) -> &str {
        &self.line
    }
    fn structured_metadata(&self) -> impl Iterator<Item = (&str, &str)> {
        self.structured_metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A stream as the encoders read it: a [`Stream`], or a label set with entry views.
pub trait StreamView {
    /// The entries' type.
    type Entry: EntryView;
    /// Label names and values, as [`Stream::labels`].
    fn labels(&self) -> &BTreeMap<String, String>;
    /// Entries of this stream, in the order sent.
    fn entries(&self) -> &[Self::Entry];
}

impl StreamView for Stream {
    type Entry = Entry;
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
    fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// One Loki stream: a label set and its entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stream {
    /// Label names and values as given by the caller; names are sanitised and
    /// empty values dropped when rendered (see [`render_labels`]).
    pub labels: BTreeMap<String, String>,
    /// Entries of this stream.
    pub entries: Vec<Entry>,
}

/// True when `name` matches `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Map a label name onto `[a-zA-Z_][a-zA-Z0-9_]*`: every other character becomes `_`,
/// a leading digit gets a `_` prefix, and the empty name becomes `_`.
pub fn sanitize_label_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        out.push('_');
    }
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    out
}

/// The label set Loki will see: names sanitised, empty values dropped.
///
/// When two names sanitise to the same name, a name that was already valid wins;
/// otherwise the first in byte order wins. The result is deterministic.
pub fn effective_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in labels {
        if !v.is_empty() && is_valid_label_name(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in labels {
        if !v.is_empty() && !is_valid_label_name(k) {
            out.entry(sanitize_label_name(k))
                .or_insert_with(|| v.clone());
        }
    }
    out
}

/// Escape a label value for the text form: `\` → `\\`, `"` → `\"`, newline → `\n`,
/// carriage return → `\r`, tab → `\t`.
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

/// Render a label set in Loki's text form, e.g. `{app="x", host="y"}`, after
/// [`effective_labels`]. An empty set renders as `{}`.
pub fn render_labels(labels: &BTreeMap<String, String>) -> String {
    let eff = effective_labels(labels);
    let mut out = String::from("{");
    for (i, (k, v)) in eff.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(k);
        out.push_str("=\"");
        out.push_str(&escape_label_value(v));
        out.push('"');
    }
    out.push('}');
    out
}

/// Group (labels, entry) pairs into streams and sort each stream by timestamp.
///
/// Pairs whose labels render to the same text (after sanitising and dropping empty
/// values) land in one stream, whose `labels` are the effective labels. Streams keep
/// the order in which their first entry appeared; entries are sorted stably by
/// `ts_ns`, so entries with equal timestamps keep their input order.
pub fn group_entries<I>(items: I) -> Vec<Stream>
where
    I: IntoIterator<Item = (BTreeMap<String, String>, Entry)>,
{
    let mut index: BTreeMap<BTreeMap<String, String>, usize> = BTreeMap::new();
    let mut streams: Vec<Stream> = Vec::new();
    for (labels, entry) in items {
        let eff = effective_labels(&labels);
        let i = match index.get(&eff) {
            Some(&i) => i,
            None => {
                streams.push(Stream {
                    labels: eff.clone(),
                    entries: Vec::new(),
                });
                index.insert(eff, streams.len() - 1);
                streams.len() - 1
            }
        };
        streams[i].entries.push(entry);
    }
    for s in &mut streams {
        s.entries.sort_by_key(|e| e.ts_ns);
    }
    streams
}

/// Merge streams with equal effective labels and sort each by timestamp (stable).
pub fn group_streams(streams: Vec<Stream>) -> Vec<Stream> {
    group_entries(streams.into_iter().flat_map(|s| {
        let labels = s.labels;
        s.entries.into_iter().map(move |e| (labels.clone(), e))
    }))
}
