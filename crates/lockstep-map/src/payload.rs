//! The spool payload: a record mapped into reused buffers ([`Scratch`]) and written as the
//! bytes of a [`SpooledEntry`] (`encode_tagged`, `encode_event`), or built as one (`map`,
//! `map_tagged`).

use fluent_bit_chunk::MapView;
use lockstep_ship::SpooledEntry;

use crate::accessor::*;
use crate::*;

/// Buffers a [`Mapping`] reuses from record to record ([`Mapping::encode_tagged`]):
/// values are kept in slots whose strings keep their capacity.
#[derive(Debug, Default)]
pub struct Scratch {
    pub(crate) tenant: String,
    pub(crate) has_tenant: bool,
    /// (index of the configured label, value); the first `n_labels` are this record's.
    pub(crate) labels: Vec<(usize, String)>,
    pub(crate) n_labels: usize,
    /// (index of the configured metadata pair, value); the first `n_metadata` are this
    /// record's.
    pub(crate) metadata: Vec<(usize, String)>,
    pub(crate) n_metadata: usize,
    pub(crate) line: String,
    pub(crate) otlp: crate::otlp::OtlpParts,
}

/// Slot `i` of `v` (created when missing), its string emptied.
pub(crate) fn slot(v: &mut Vec<(usize, String)>, i: usize) -> &mut String {
    if v.len() <= i {
        v.resize_with(i + 1, Default::default);
    }
    let s = &mut v[i].1;
    s.clear();
    s
}

impl Mapping {
    /// Maps one record body (and its event timestamp) to an entry; `stats` is
    /// incremented. Never fails on record content: missing accessor targets just
    /// produce no label / no metadata. `$TAG` reads as the empty tag.
    pub fn map(&self, ts_ns: i64, body: MapView<'_>, stats: &mut MapStats) -> SpooledEntry {
        self.map_tagged("", ts_ns, body, stats)
    }

    /// [`Mapping::map`] with the chunk's tag, for `$TAG` and `$TAG[n]`.
    pub fn map_tagged(
        &self,
        tag: &str,
        ts_ns: i64,
        body: MapView<'_>,
        stats: &mut MapStats,
    ) -> SpooledEntry {
        let mut sc = Scratch::default();
        self.fill(tag, body, MapView::empty(), stats, &mut sc);
        SpooledEntry {
            tenant: sc.has_tenant.then(|| sc.tenant.clone()),
            labels: self
                .labels_of(&sc)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ts_ns,
            line: std::mem::take(&mut sc.line),
            structured_metadata: self
                .metadata_of(&sc)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Appends the spool payload of one record to `out`: the bytes of
    /// `map_tagged(..).encode()`, written from `scratch`'s reused buffers without
    /// building the entry (Flush's hot path: no allocation per record once the buffers
    /// have grown).
    pub fn encode_tagged(
        &self,
        tag: &str,
        ts_ns: i64,
        body: MapView<'_>,
        stats: &mut MapStats,
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
    ) {
        self.encode_event(tag, ts_ns, body, MapView::empty(), stats, scratch, out)
    }

    /// [`Mapping::encode_tagged`] with the event's metadata: a structured metadata value
    /// that is exactly `$trace_id` (or `$span_id`) and finds nothing in the body takes
    /// the OTLP record's own id from the metadata (`otlp.trace_id` / `otlp.span_id`, the
    /// raw bytes Fluent Bit's `opentelemetry` input keeps, as lowercase hex), so the
    /// entries of OTLP logs carry their trace id like any other.
    #[allow(clippy::too_many_arguments)]
    pub fn encode_event(
        &self,
        tag: &str,
        ts_ns: i64,
        body: MapView<'_>,
        meta: MapView<'_>,
        stats: &mut MapStats,
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
    ) {
        self.fill(tag, body, meta, stats, scratch);
        lockstep_ship::encode_entry(
            out,
            scratch.has_tenant.then_some(scratch.tenant.as_str()),
            self.labels_of(scratch),
            ts_ns,
            &scratch.line,
            self.metadata_of(scratch),
        );
    }

    /// [`Mapping::encode_event`] for a record with its group (`(metadata, body)` of the
    /// group-start marker of Fluent Bit's `opentelemetry` input): an OTLP record is
    /// mapped as Loki's OTLP ingestion maps it (the body as the line, resource
    /// attributes on the index list as labels, the rest as structured metadata; see
    /// `otlp.rs`), plus the configured labels and metadata (an OTLP name wins over a
    /// configured one). Any other record, or with `otlp_mapping off`, as
    /// [`Mapping::encode_event`].
    #[allow(clippy::too_many_arguments)]
    pub fn encode_record(
        &self,
        tag: &str,
        ts_ns: i64,
        body: MapView<'_>,
        meta: MapView<'_>,
        group: Option<(MapView<'_>, MapView<'_>)>,
        stats: &mut MapStats,
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
    ) {
        let Some((o, otlp)) = self
            .otlp
            .as_ref()
            .and_then(|o| Some((o, crate::otlp::otlp_of(meta, group)?)))
        else {
            return self.encode_event(tag, ts_ns, body, meta, stats, scratch, out);
        };
        self.fill_top(tag, &Top::new(body), meta, stats, scratch);
        let mut parts = std::mem::take(&mut scratch.otlp);
        let ts_ns = o.map(ts_ns, body, otlp, group, &mut parts);
        for (_, v) in parts.labels.as_mut_slice() {
            crate::labels::truncate_label_value(v, stats);
        }
        // Labels: the OTLP ones, then the configured ones of other names (the default
        // `job` only when nothing else names the stream), sorted; past Loki's 15 the
        // rest go to structured metadata.
        let mut labels: Vec<(&str, &str)> = parts
            .labels
            .as_slice()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let default_job = scratch.n_labels == 1
            && scratch
                .labels
                .first()
                .is_some_and(|(i, _)| *i == usize::MAX);
        for (k, v) in self.labels_of(scratch) {
            if (!default_job || labels.is_empty()) && !labels.iter().any(|(n, _)| *n == k) {
                labels.push((k, v));
            }
        }
        // Sorted (stable); of one name the last wins, as in Loki's label map.
        labels.sort_by(|a, b| a.0.cmp(b.0));
        let mut last: Vec<(&str, &str)> = Vec::with_capacity(labels.len());
        for (i, l) in labels.iter().enumerate() {
            if labels.get(i + 1).is_none_or(|n| n.0 != l.0) {
                last.push(*l);
            }
        }
        let mut labels = last;
        let mut metadata: Vec<(&str, &str)> = parts
            .metadata
            .as_slice()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        // Loki's limit does not count `service_name`, which is never spilled.
        let counted = |l: &[(&str, &str)]| l.iter().filter(|(n, _)| *n != "service_name").count();
        while counted(&labels) > MAX_LABELS {
            if let Some(i) = labels.iter().rposition(|(n, _)| *n != "service_name") {
                metadata.push(labels.remove(i));
            }
        }
        for (k, v) in self.metadata_of(scratch) {
            if parts.metadata.as_slice().iter().any(|(n, _)| n == k) {
                stats.metadata_dropped += 1;
            } else {
                metadata.push((k, v));
            }
        }
        lockstep_ship::encode_entry(
            out,
            scratch.has_tenant.then_some(scratch.tenant.as_str()),
            labels.into_iter(),
            ts_ns,
            &parts.line,
            metadata.into_iter(),
        );
        scratch.otlp = parts;
    }

    /// Maps a record into `sc`: tenant, labels, line and metadata, reusing its buffers.
    pub(crate) fn fill(
        &self,
        tag: &str,
        body: MapView<'_>,
        meta: MapView<'_>,
        stats: &mut MapStats,
        sc: &mut Scratch,
    ) {
        // One pass over the top level serves every accessor and removal below (each
        // used to scan the whole record: the flush path's largest cost).
        let top = Top::new(body);
        self.fill_top(tag, &top, meta, stats, sc);
        sc.line.clear();
        self.line(&top, stats, &mut sc.line);
    }

    /// Tenant, labels and metadata from the record's top level (all but the line: an
    /// OTLP record's line is its body).
    fn fill_top(
        &self,
        tag: &str,
        top: &Top<'_>,
        meta: MapView<'_>,
        stats: &mut MapStats,
        sc: &mut Scratch,
    ) {
        sc.has_tenant = self.tenant(top, stats, &mut sc.tenant);
        self.labels(tag, top, stats, sc);
        self.metadata(tag, top, meta, stats, sc);
    }

    /// The labels filled into `sc`, as (name, value).
    pub(crate) fn labels_of<'s>(
        &'s self,
        sc: &'s Scratch,
    ) -> impl ExactSizeIterator<Item = (&'s str, &'s str)> {
        sc.labels[..sc.n_labels]
            .iter()
            .map(|(i, v)| match self.labels.get(*i) {
                Some(p) => (p.name.as_str(), v.as_str()),
                None => ("job", "fluent-bit"),
            })
    }

    /// The structured metadata filled into `sc`, as (name, value).
    pub(crate) fn metadata_of<'s>(
        &'s self,
        sc: &'s Scratch,
    ) -> impl ExactSizeIterator<Item = (&'s str, &'s str)> {
        sc.metadata[..sc.n_metadata]
            .iter()
            .map(|(i, v)| (self.metadata[*i].name.as_str(), v.as_str()))
    }
}
