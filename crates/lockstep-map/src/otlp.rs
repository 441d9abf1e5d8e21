//! OTLP logs mapped as Loki's own OTLP ingestion (`/otlp/v1/logs`) stores them, so an
//! entry read back from Loki is the same whether the application sent its logs to Loki
//! directly or through Fluent Bit's `opentelemetry` input and `lockstep_loki`.
//!
//! What Loki does (grafana/loki `pkg/loghttp/push/otlp.go`, `otlplabels/labels.go`,
//! `otlplabels/config.go`; read at 65e30f8), and so what this does:
//! - **Line**: the body as a string (`AnyValue.AsString()`): a string as is, a map as
//!   compact JSON with sorted keys, an array as JSON, numbers and booleans as text, an
//!   absent body as `""`. Fluent Bit wraps a body that is not a map as `{"log": v}`:
//!   a body that is exactly one `log` key is read as `v` (a real map body of that one key
//!   cannot be told apart, and reads the same way).
//! - **Labels**: the resource attributes on the index list (Loki's 18 defaults:
//!   `service.name`, `service.namespace`, `k8s.*`, … unless `ignore_defaults`, plus
//!   the configured ones), named as Loki names them. Without `service.name`, the label
//!   `service_name` is the first of Loki's discovery list found among those labels, else
//!   `unknown_service`. Nothing from log attributes becomes a label.
//! - **Structured metadata**: the log attributes (maps flattened `parent_child`), then
//!   `observed_timestamp` (only when the record had its own time), `severity_number`
//!   (not when 0), `severity_text`, `dropped_attributes_count`, `flags` (Fluent Bit's
//!   `trace_flags`, not when 0), `trace_id`/`span_id` (lowercase hex, not when empty or
//!   all zero), `event_name`; the resource attributes that are not labels; the scope's
//!   attributes, `scope_name`, `scope_version`, `scope_dropped_attributes_count`.
//! - **Names**: Prometheus' label namer (`otlptranslator.LabelNamer.Build`): every run
//!   of characters other than `[A-Za-z0-9]` (`_` included) becomes one `_`; a leading
//!   digit gets `key_` before it; `__x__` keeps its underscores. A name that comes out
//!   empty or only `_` is dropped (Loki answers 400 to the whole request; a push with
//!   such a structured-metadata name gets 500).
//! - **Values**: `AsString()`: integers in decimal, doubles as JavaScript/Go JSON prints
//!   them (`1.5`, `100`, `1e+21`, `NaN`), booleans, bytes in base64, arrays and maps as
//!   Go's `encoding/json` writes them (sorted keys, no HTML escaping; a NaN inside
//!   makes the value empty).
//!
//! What cannot be the same: Fluent Bit's protobuf path cuts every integer attribute to
//! 32 bits, and its JSON path turns an absent body into `{}`; both are Fluent Bit's, before
//! the output sees the record. Invalid UTF-8 is replaced (Loki drops the resource, or
//! writes spaces).
//!
//! Depth: values are rendered recursively up to [`MAX_DEPTH`] levels (Fluent Bit flushes on
//! a 64 KiB stack); deeper containers are written by the non-recursive JSON writer.

use std::fmt::Write as _;

use base64::Engine as _;
use fluent_bit_chunk::decode::{Token, Tokens};
use fluent_bit_chunk::{MapView, ValueRef};

use crate::MappingError;

/// Loki's `default_resource_attributes_as_index_labels` (`otlplabels/config.go`).
pub const DEFAULT_INDEX_LABELS: &[&str] = &[
    "service.name",
    "service.namespace",
    "service.instance.id",
    "deployment.environment",
    "deployment.environment.name",
    "cloud.region",
    "cloud.availability_zone",
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.container.name",
    "container.name",
    "k8s.replicaset.name",
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
];

/// Loki's `discover_service_name` default (`pkg/validation/limits.go`): where
/// `service_name` comes from when the resource has no `service.name`.
const DISCOVER_SERVICE_NAME: &[&str] = &[
    "service",
    "app",
    "application",
    "app_name",
    "name",
    "app_kubernetes_io_name",
    "container",
    "container_name",
    "k8s_container_name",
    "component",
    "workload",
    "job",
    "k8s_job_name",
];

/// Containers nested deeper than this are written without sorting their keys.
pub const MAX_DEPTH: usize = 32;

/// One attribute rule: exact names, or an anchored regular expression.
#[derive(Debug, Clone)]
enum Matcher {
    Names(Vec<String>),
    Regex(regex::Regex),
}

impl Matcher {
    fn matches(&self, key: &str) -> bool {
        match self {
            Matcher::Names(n) => n.iter().any(|x| x == key),
            Matcher::Regex(r) => r.is_match(key),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Index,
    Drop,
}

/// The compiled OTLP mapping.
#[derive(Debug, Clone)]
pub(crate) struct Otlp {
    /// Resource attribute rules, first match wins; no match: structured metadata.
    resource: Vec<(Action, Matcher)>,
    scope_drop: Vec<Matcher>,
    log_drop: Vec<Matcher>,
    severity_text_as_label: bool,
}

/// Raw settings (the output's `otlp_*` keys).
#[derive(Debug, Clone, Default)]
pub struct OtlpConfig {
    /// `otlp_mapping`: `loki` (default) or `off` (OTLP records are mapped as any other).
    pub mapping: Option<String>,
    /// `otlp_default_resource_attributes_as_index_labels`: replaces Loki's default list.
    pub default_index_labels: Option<String>,
    /// `otlp_ignore_defaults`: only `otlp_resource_index_labels` become labels.
    pub ignore_defaults: Option<String>,
    /// `otlp_resource_index_labels`: more resource attributes as labels.
    pub resource_index_labels: Option<String>,
    /// `otlp_resource_drop`, `otlp_scope_drop`, `otlp_log_drop`: attributes not sent.
    pub resource_drop: Option<String>,
    pub scope_drop: Option<String>,
    pub log_drop: Option<String>,
    /// `otlp_severity_text_as_label`: `severity_text` as a label too.
    pub severity_text_as_label: Option<String>,
}

fn flag(key: &'static str, v: &Option<String>) -> Result<bool, MappingError> {
    match v.as_deref().map(str::trim) {
        None => Ok(false),
        Some(x)
            if ["on", "true", "yes"]
                .iter()
                .any(|t| x.eq_ignore_ascii_case(t)) =>
        {
            Ok(true)
        }
        Some(x)
            if ["off", "false", "no"]
                .iter()
                .any(|t| x.eq_ignore_ascii_case(t)) =>
        {
            Ok(false)
        }
        Some(x) => Err(MappingError::InvalidValue {
            key,
            value: x.to_string(),
            expected: "on or off",
        }),
    }
}

/// A comma list of attribute names and `regex:<re>` entries (anchored, as Loki's).
fn matchers(key: &'static str, v: &Option<String>) -> Result<Vec<Matcher>, MappingError> {
    let mut names = Vec::new();
    let mut out = Vec::new();
    for e in crate::clist(v) {
        match e.strip_prefix("regex:") {
            Some(re) => {
                let r = regex::Regex::new(&format!("^(?s:{re})$")).map_err(|err| {
                    MappingError::InvalidEntry {
                        key,
                        entry: e.to_string(),
                        reason: err.to_string(),
                    }
                })?;
                out.push(Matcher::Regex(r));
            }
            None => names.push(e.to_string()),
        }
    }
    if !names.is_empty() {
        out.insert(0, Matcher::Names(names));
    }
    Ok(out)
}

impl Otlp {
    /// `None` when `otlp_mapping off`.
    pub(crate) fn new(c: &OtlpConfig) -> Result<Option<Otlp>, MappingError> {
        match c.mapping.as_deref().map(str::trim) {
            None => {}
            Some(v) if v.eq_ignore_ascii_case("loki") => {}
            Some(v) if v.eq_ignore_ascii_case("off") => return Ok(None),
            Some(v) => {
                return Err(MappingError::InvalidValue {
                    key: "otlp_mapping",
                    value: v.to_string(),
                    expected: "loki or off",
                })
            }
        }
        let mut resource = Vec::new();
        if !flag("otlp_ignore_defaults", &c.ignore_defaults)? {
            let defaults = match &c.default_index_labels {
                Some(_) => matchers(
                    "otlp_default_resource_attributes_as_index_labels",
                    &c.default_index_labels,
                )?,
                None => vec![Matcher::Names(
                    DEFAULT_INDEX_LABELS.iter().map(|s| s.to_string()).collect(),
                )],
            };
            resource.extend(defaults.into_iter().map(|m| (Action::Index, m)));
        }
        // As in Loki, the defaults come first: dropping one needs `otlp_ignore_defaults`.
        for m in matchers("otlp_resource_drop", &c.resource_drop)? {
            resource.push((Action::Drop, m));
        }
        for m in matchers("otlp_resource_index_labels", &c.resource_index_labels)? {
            resource.push((Action::Index, m));
        }
        Ok(Some(Otlp {
            resource,
            scope_drop: matchers("otlp_scope_drop", &c.scope_drop)?,
            log_drop: matchers("otlp_log_drop", &c.log_drop)?,
            severity_text_as_label: flag("otlp_severity_text_as_label", &c.severity_text_as_label)?,
        }))
    }

    fn resource_action(&self, key: &str) -> Option<Action> {
        self.resource
            .iter()
            .find(|(_, m)| m.matches(key))
            .map(|(a, _)| *a)
    }
}

/// A record's `otlp` map: where it starts in the record's metadata (a token reader at its
/// first key, and its number of entries), or none (a record of an OTLP group without
/// one: read as an empty map).
#[derive(Debug, Clone, Copy)]
pub(crate) enum OtlpMap<'a> {
    At {
        /// The record's metadata, holding the map.
        meta: MapView<'a>,
        fields: Tokens<'a>,
        len: u32,
    },
    Empty,
}

/// When a record came from Fluent Bit's `opentelemetry` input (its metadata has an `otlp`
/// map, or its group is an OTLP group), its `otlp` map. Found without walking over it:
/// a view of it (`meta.get("otlp")`) would skip over all of it first, and then every
/// read of a value in it over that value again.
pub(crate) fn otlp_of<'a>(
    meta: MapView<'a>,
    group: Option<(MapView<'a>, MapView<'a>)>,
) -> Option<OtlpMap<'a>> {
    match find_otlp(meta) {
        Some((fields, len)) => Some(OtlpMap::At { meta, fields, len }),
        None => group
            .is_some_and(|(gm, _)| {
                matches!(gm.get("schema"), Some(ValueRef::Str(s)) if s.as_bytes() == b"otlp")
            })
            .then_some(OtlpMap::Empty),
    }
}

/// `meta.get("otlp")` when it is a map: tokens at its first key, and its length.
fn find_otlp(meta: MapView<'_>) -> Option<(Tokens<'_>, u32)> {
    let mut t = Tokens::new(meta.raw());
    let Token::Map(n) = t.next_token()? else {
        return None;
    };
    for _ in 0..n {
        let k = t.next_token()?;
        t.skip_contents(&k)?;
        if matches!(k, Token::Scalar(ValueRef::Str(s)) if s.as_bytes() == b"otlp") {
            // the first `otlp` key decides, as `get` finds it
            return match t.next_token()? {
                Token::Map(m) => Some((t, m)),
                _ => None,
            };
        }
        t.skip_value()?;
    }
    None
}

/// The fields of a record's `otlp` map that the mapping reads (of a repeated key, the
/// last).
#[derive(Debug, Default, Clone, Copy)]
struct Fields<'a> {
    attrs: Option<ValueRef<'a>>,
    timestamp: Option<ValueRef<'a>>,
    observed: Option<ValueRef<'a>>,
    sev_num: Option<ValueRef<'a>>,
    sev_text: Option<ValueRef<'a>>,
    dropped: Option<ValueRef<'a>>,
    flags: Option<ValueRef<'a>>,
    trace: Option<ValueRef<'a>>,
    span: Option<ValueRef<'a>>,
    event: Option<ValueRef<'a>>,
}

impl<'a> Fields<'a> {
    /// The slot of field `k`, if the mapping reads it.
    fn slot(&mut self, k: &[u8]) -> Option<&mut Option<ValueRef<'a>>> {
        Some(match k {
            b"attributes" => &mut self.attrs,
            b"timestamp" => &mut self.timestamp,
            b"observed_timestamp" => &mut self.observed,
            b"severity_number" => &mut self.sev_num,
            b"severity_text" => &mut self.sev_text,
            b"dropped_attributes_count" => &mut self.dropped,
            b"trace_flags" => &mut self.flags,
            b"trace_id" => &mut self.trace,
            b"span_id" => &mut self.span,
            b"event_name" => &mut self.event,
            _ => return None,
        })
    }
}

/// (name, value) pairs whose strings are reused from record to record: Flush maps a
/// chunk's records through one [`crate::Scratch`] without an allocation per pair once
/// the strings have grown.
#[derive(Debug, Default, Clone)]
pub(crate) struct Pairs {
    v: Vec<(String, String)>,
    n: usize,
}

impl Pairs {
    pub(crate) fn clear(&mut self) {
        self.n = 0;
    }
    /// A new pair, its strings emptied.
    fn next(&mut self) -> (&mut String, &mut String) {
        if self.v.len() == self.n {
            self.v.push(Default::default());
        }
        let (k, v) = &mut self.v[self.n];
        self.n += 1;
        k.clear();
        v.clear();
        (k, v)
    }
    fn push(&mut self, k: &str, v: &str) {
        let (a, b) = self.next();
        a.push_str(k);
        b.push_str(v);
    }
    fn pop(&mut self) {
        self.n -= 1;
    }
    pub(crate) fn as_slice(&self) -> &[(String, String)] {
        &self.v[..self.n]
    }
    pub(crate) fn as_mut_slice(&mut self) -> &mut [(String, String)] {
        &mut self.v[..self.n]
    }
    fn extend_from(&mut self, other: &Pairs) {
        for (k, v) in other.as_slice() {
            self.push(k, v);
        }
    }
    fn retain_non_empty_values(&mut self) {
        let mut w = 0;
        for r in 0..self.n {
            if !self.v[r].1.is_empty() {
                self.v.swap(w, r);
                w += 1;
            }
        }
        self.n = w;
    }
}

/// What an OTLP record maps to, besides the configured labels and metadata.
#[derive(Debug, Default)]
pub(crate) struct OtlpParts {
    pub labels: Pairs,
    pub metadata: Pairs,
    pub line: String,
    /// The last group's mapping (labels, resource and scope metadata), by its bytes:
    /// the records of one group share it.
    group_key: Vec<u8>,
    group_labels: Pairs,
    group_metadata: Pairs,
    group_valid: bool,
}

impl Otlp {
    /// Fills `out` from the record (event timestamp `ts_ns`, body, metadata) and its group
    /// (metadata, body: `resource`, `scope`). One pass over each map. Returns the entry's
    /// timestamp: the event's, or when that is 0 (Fluent Bit's JSON path with an explicit
    /// `"timeUnixNano":"0"`) the observed time, else now, as Loki's OTLP ingestion does.
    pub(crate) fn map(
        &self,
        ts_ns: i64,
        body: MapView<'_>,
        otlp: OtlpMap<'_>,
        group: Option<(MapView<'_>, MapView<'_>)>,
        out: &mut OtlpParts,
    ) -> i64 {
        out.labels.clear();
        out.metadata.clear();
        out.line.clear();
        line(body, &mut out.line);
        // The fields, and the log attributes first into the metadata: in one pass over
        // the map when its values are what Fluent Bit writes (scalars, attributes of
        // scalars), else through views of it, which read anything.
        let mut f = Fields::default();
        if let OtlpMap::At { meta, fields, len } = otlp {
            if self
                .fields_in_one_pass(fields, len, &mut f, &mut out.metadata)
                .is_none()
            {
                out.metadata.clear();
                f = Fields::default();
                let view = match meta.get("otlp") {
                    Some(ValueRef::Map(m)) => m,
                    _ => MapView::empty(),
                };
                self.fields_by_views(view, &mut f, &mut out.metadata);
            }
        }
        let Fields {
            attrs: _,
            timestamp,
            observed,
            sev_num,
            sev_text,
            dropped,
            flags,
            trace,
            span,
            event,
        } = f;
        // the record's own fields
        let observed = observed.and_then(uint);
        let time_set = match timestamp {
            Some(v) => uint(v).is_some_and(|t| t != 0),
            // Fluent Bit's JSON path keeps no `timestamp`: a record without its own time
            // got the observed time as its timestamp.
            None => ts_ns != 0 && observed != Some(ts_ns as u64),
        };
        if let Some(o) = observed {
            if o != 0 && time_set {
                let (k, v) = out.metadata.next();
                k.push_str("observed_timestamp");
                let _ = write!(v, "{o}");
            }
        }
        if let Some(n) = sev_num {
            let (k, v) = out.metadata.next();
            k.push_str("severity_number");
            as_string(n, v);
            if v.is_empty() || v == "0" {
                out.metadata.pop();
            }
        }
        let mut severity_text = None;
        if let Some(ValueRef::Str(s)) = sev_text {
            if !s.as_bytes().is_empty() {
                severity_text = Some(s);
                out.metadata.push("severity_text", &s.to_str_lossy());
            }
        }
        for (src, name) in [(dropped, "dropped_attributes_count"), (flags, "flags")] {
            if let Some(n) = src.and_then(uint) {
                if n != 0 {
                    let (k, v) = out.metadata.next();
                    k.push_str(name);
                    let _ = write!(v, "{n}");
                }
            }
        }
        for (id, name) in [(trace, "trace_id"), (span, "span_id")] {
            if let Some(ValueRef::Bin(b)) = id {
                if b.iter().any(|&x| x != 0) {
                    let (k, v) = out.metadata.next();
                    k.push_str(name);
                    for x in b {
                        v.push(char::from(HEX[usize::from(x >> 4)]));
                        v.push(char::from(HEX[usize::from(x & 15)]));
                    }
                }
            }
        }
        if let Some(ValueRef::Str(s)) = event {
            if !s.as_bytes().is_empty() {
                out.metadata.push("event_name", &s.to_str_lossy());
            }
        }
        // the group: resource and scope, mapped once per group
        let gbody = group.map(|(_, b)| b).unwrap_or(MapView::empty());
        if !out.group_valid || out.group_key != gbody.raw() {
            out.group_key.clear();
            out.group_key.extend_from_slice(gbody.raw());
            out.group_labels.clear();
            out.group_metadata.clear();
            self.map_group(gbody, &mut out.group_labels, &mut out.group_metadata);
            out.group_valid = true;
        }
        out.labels.extend_from(&out.group_labels);
        out.metadata.extend_from(&out.group_metadata);
        if self.severity_text_as_label {
            if let Some(s) = severity_text {
                out.labels.push("severity_text", &s.to_str_lossy());
            }
        }
        if ts_ns != 0 {
            return ts_ns;
        }
        match observed {
            Some(o) if o != 0 => i64::try_from(o).unwrap_or(i64::MAX),
            _ => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        }
    }

    /// The fields of the `otlp` map read through views, and its log attributes mapped
    /// into `metadata` (a raw `event_name` attribute is left out when the record has its
    /// own event name, as Loki does).
    fn fields_by_views<'a>(&self, otlp: MapView<'a>, f: &mut Fields<'a>, metadata: &mut Pairs) {
        for (k, v) in otlp.iter() {
            let ValueRef::Str(k) = k else { continue };
            if let Some(slot) = f.slot(k.as_bytes()) {
                *slot = Some(v);
            }
        }
        let has_event_name = matches!(f.event, Some(ValueRef::Str(s)) if !s.as_bytes().is_empty());
        if let Some(ValueRef::Map(attrs)) = f.attrs {
            for (k, v) in attrs.iter() {
                let k = key_str(k);
                if (has_event_name && k == "event_name")
                    || self.log_drop.iter().any(|m| m.matches(&k))
                {
                    continue;
                }
                flatten(None, &k, v, 0, metadata);
            }
        }
    }

    /// [`Otlp::fields_by_views`] in one pass of tokens over the map's `len` entries at
    /// `t`, for the maps Fluent Bit writes: `None` (`metadata` then holds part of the
    /// attributes) for anything whose reading needs a view (a container where a field
    /// or an attribute value is read, a repeated `attributes`, an `event_name`
    /// attribute, which the record's own event name, maybe further on, decides).
    fn fields_in_one_pass<'a>(
        &self,
        mut t: Tokens<'a>,
        len: u32,
        f: &mut Fields<'a>,
        metadata: &mut Pairs,
    ) -> Option<()> {
        let mut attrs_seen = false;
        for _ in 0..len {
            let k = t.next_token()?;
            let Token::Scalar(ValueRef::Str(k)) = k else {
                t.skip_contents(&k)?;
                t.skip_value()?;
                continue;
            };
            let v = t.next_token()?;
            if k.as_bytes() == b"attributes" {
                if attrs_seen {
                    return None;
                }
                attrs_seen = true;
                match v {
                    Token::Map(n) => {
                        for _ in 0..n {
                            let Token::Scalar(k) = t.next_token()? else {
                                return None;
                            };
                            let Token::Scalar(v) = t.next_token()? else {
                                return None;
                            };
                            let k = key_str(k);
                            if k == "event_name" {
                                return None;
                            }
                            if self.log_drop.iter().any(|m| m.matches(&k)) {
                                continue;
                            }
                            flatten(None, &k, v, 0, metadata);
                        }
                    }
                    // not a map: no attributes
                    v => t.skip_contents(&v)?,
                }
                continue;
            }
            match (f.slot(k.as_bytes()), v) {
                (Some(slot), Token::Scalar(v)) => *slot = Some(v),
                (Some(_), _) => return None,
                (None, v) => t.skip_contents(&v)?,
            }
        }
        Some(())
    }

    /// The labels and metadata of a group's resource and scope.
    fn map_group(&self, gbody: MapView<'_>, labels: &mut Pairs, metadata: &mut Pairs) {
        let (mut resource, mut scope) = (MapView::empty(), MapView::empty());
        for (k, v) in gbody.iter() {
            match (k, v) {
                (ValueRef::Str(k), ValueRef::Map(m)) if k.as_bytes() == b"resource" => resource = m,
                (ValueRef::Str(k), ValueRef::Map(m)) if k.as_bytes() == b"scope" => scope = m,
                _ => {}
            }
        }
        let mut has_service_name = false;
        if let Some(ValueRef::Map(attrs)) = resource.get("attributes") {
            for (k, v) in attrs.iter() {
                let k = key_str(k);
                if k == "service.name" {
                    let mut s = String::new();
                    as_string(v, &mut s);
                    has_service_name |= !s.is_empty();
                }
                match self.resource_action(&k) {
                    Some(Action::Drop) => {}
                    Some(Action::Index) => flatten(None, &k, v, 0, labels),
                    None => flatten(None, &k, v, 0, metadata),
                }
            }
        }
        labels.retain_non_empty_values();
        if !has_service_name && !labels.as_slice().iter().any(|(n, _)| n == "service_name") {
            let found = DISCOVER_SERVICE_NAME.iter().find_map(|d| {
                labels
                    .as_slice()
                    .iter()
                    .find(|(n, _)| n == d)
                    .map(|(_, v)| v.clone())
            });
            labels.push(
                "service_name",
                found.as_deref().unwrap_or("unknown_service"),
            );
        }
        let (mut attrs, mut name, mut version, mut dropped) = (None, None, None, None);
        for (k, v) in scope.iter() {
            let ValueRef::Str(k) = k else { continue };
            match k.as_bytes() {
                b"attributes" => attrs = Some(v),
                b"name" => name = Some(v),
                b"version" => version = Some(v),
                b"dropped_attributes_count" => dropped = Some(v),
                _ => {}
            }
        }
        if let Some(ValueRef::Map(attrs)) = attrs {
            for (k, v) in attrs.iter() {
                let k = key_str(k);
                if self.scope_drop.iter().any(|m| m.matches(&k)) {
                    continue;
                }
                flatten(None, &k, v, 0, metadata);
            }
        }
        for (src, key) in [(name, "scope_name"), (version, "scope_version")] {
            if let Some(ValueRef::Str(s)) = src {
                if !s.as_bytes().is_empty() {
                    metadata.push(key, &s.to_str_lossy());
                }
            }
        }
        if let Some(n) = dropped.and_then(uint) {
            if n != 0 {
                metadata.push("scope_dropped_attributes_count", &n.to_string());
            }
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn uint(v: ValueRef<'_>) -> Option<u64> {
    match v {
        ValueRef::UInt(n) => Some(n),
        ValueRef::Int(n) => u64::try_from(n).ok(),
        ValueRef::Str(s) => s.as_str().and_then(|s| s.trim().parse().ok()),
        _ => None,
    }
}

fn key_str(k: ValueRef<'_>) -> std::borrow::Cow<'_, str> {
    match k {
        ValueRef::Str(s) => s.to_str_lossy(),
        other => {
            let mut s = String::new();
            as_string(other, &mut s);
            std::borrow::Cow::Owned(s)
        }
    }
}

/// Loki's name for an attribute key (`LabelNamer.Build`); `false` when it gives no
/// usable name (empty, or only `_`).
pub fn loki_name(raw: &str, out: &mut String) -> bool {
    let start = out.len();
    let b = raw.as_bytes();
    let reserved = b.len() >= 4 && raw.starts_with("__") && raw.ends_with("__");
    let inner = if reserved {
        &raw[2..raw.len() - 2]
    } else {
        raw
    };
    if reserved {
        out.push_str("__");
    }
    let mut run = false;
    for c in inner.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            run = false;
        } else if !run {
            out.push('_');
            run = true;
        }
    }
    if reserved {
        out.push_str("__");
    } else if out[start..].starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(start, "key_");
    }
    out[start..].bytes().any(|c| c != b'_')
}

/// Attribute `key` (under the already normalised `prefix`) with value `v`: one pair,
/// or the pairs of a map's members (`prefix_key_member`); an empty map gives none.
fn flatten(prefix: Option<&str>, key: &str, v: ValueRef<'_>, depth: usize, out: &mut Pairs) {
    if let ValueRef::Map(m) = v {
        if depth < MAX_DEPTH {
            let mut name = String::new();
            let ok = match prefix {
                None => loki_name(key, &mut name),
                Some(p) => loki_name(&format!("{p}_{key}"), &mut name),
            };
            if ok {
                for (ck, cv) in m.iter() {
                    flatten(Some(&name), &key_str(ck), cv, depth + 1, out);
                }
            }
            return;
        }
    }
    let (name, value) = out.next();
    let ok = match prefix {
        None => loki_name(key, name),
        Some(p) => {
            let joined = format!("{p}_{key}");
            loki_name(&joined, name)
        }
    };
    if !ok {
        out.pop();
        return;
    }
    as_string_at(v, depth, value);
}

/// The line: the body as Loki's `Body().AsString()` would give it.
pub(crate) fn line(body: MapView<'_>, out: &mut String) {
    let mut it = body.iter();
    if let (Some((k, v)), None) = (it.next(), it.next()) {
        if matches!(k, ValueRef::Str(s) if s.as_bytes() == b"log") {
            as_string(v, out);
            return;
        }
    }
    as_string(ValueRef::Map(body), out);
}

/// `pcommon.Value.AsString()`.
pub fn as_string(v: ValueRef<'_>, out: &mut String) {
    as_string_at(v, 0, out)
}

/// [`as_string`] of a value found `depth` levels down (the levels count against
/// [`MAX_DEPTH`] together).
fn as_string_at(v: ValueRef<'_>, depth: usize, out: &mut String) {
    match v {
        ValueRef::Nil | ValueRef::Ext(..) => {}
        ValueRef::Str(s) => out.push_str(&s.to_str_lossy()),
        ValueRef::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        ValueRef::UInt(n) => {
            let _ = write!(out, "{n}");
        }
        ValueRef::Int(n) => {
            let _ = write!(out, "{n}");
        }
        ValueRef::F32(f) => float(f64::from(f), out),
        ValueRef::F64(f) => float(f, out),
        ValueRef::Bin(b) => base64::engine::general_purpose::STANDARD.encode_string(b, out),
        ValueRef::Array(_) | ValueRef::Map(_) => {
            let start = out.len();
            if !go_json(v, depth, out) {
                out.truncate(start); // Go's encoder fails on a NaN: the value is ""
            }
        }
    }
}

/// A double as pdata writes it: `NaN`, `Infinity`, `-Infinity`, else as JSON (ES6).
fn float(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        es6(f, out);
    }
}

/// A finite double as Go's `encoding/json` writes it: shortest round-trip digits,
/// positional between 1e-6 and 1e21, else `1e+21` / `1.5e-7`.
fn es6(f: f64, out: &mut String) {
    let a = f.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        let s = format!("{f:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        out.push_str(m);
        out.push('e');
        if !e.starts_with('-') {
            out.push('+');
        }
        out.push_str(e);
    } else {
        let _ = write!(out, "{f}");
    }
}

/// Go `encoding/json` (HTML escaping off) of a value; `false` on a NaN or an infinity
/// (the encoder fails). Map keys sorted bytewise, the last of a repeated key kept.
fn go_json(v: ValueRef<'_>, depth: usize, out: &mut String) -> bool {
    match v {
        ValueRef::Nil | ValueRef::Ext(..) => out.push_str("null"),
        ValueRef::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        ValueRef::UInt(n) => {
            let _ = write!(out, "{n}");
        }
        ValueRef::Int(n) => {
            let _ = write!(out, "{n}");
        }
        ValueRef::F32(_) | ValueRef::F64(_) => {
            let f = match v {
                ValueRef::F32(f) => f64::from(f),
                ValueRef::F64(f) => f,
                _ => 0.0,
            };
            if !f.is_finite() {
                return false;
            }
            es6(f, out);
        }
        ValueRef::Str(s) => go_string(s.as_bytes(), out),
        ValueRef::Bin(b) => {
            out.push('"');
            base64::engine::general_purpose::STANDARD.encode_string(b, out);
            out.push('"');
        }
        ValueRef::Array(a) if depth < MAX_DEPTH => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if !go_json(x, depth + 1, out) {
                    return false;
                }
            }
            out.push(']');
        }
        ValueRef::Map(m) if depth < MAX_DEPTH => {
            let mut entries: Vec<(std::borrow::Cow<'_, str>, ValueRef<'_>)> =
                m.iter().map(|(k, v)| (key_str(k), v)).collect();
            // stable: of a repeated key the last stays last, and is the one kept
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            let mut first = true;
            for (i, (k, x)) in entries.iter().enumerate() {
                if entries.get(i + 1).is_some_and(|n| n.0 == *k) {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                go_string(k.as_bytes(), out);
                out.push(':');
                if !go_json(*x, depth + 1, out) {
                    return false;
                }
            }
            out.push('}');
        }
        deep => fluent_bit_chunk::json::write_json(out, deep),
    }
    true
}

/// A JSON string as Go writes it: `\b` `\f` `\n` `\r` `\t` short, other controls as
/// `\u00xx`, U+2028/2029 escaped, `<>&` as is, invalid UTF-8 as `\ufffd`.
fn go_string(b: &[u8], out: &mut String) {
    out.push('"');
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                '\u{2028}' => out.push_str("\\u2028"),
                '\u{2029}' => out.push_str("\\u2029"),
                c => out.push(c),
            }
        }
        if !chunk.invalid().is_empty() {
            out.push_str("\\ufffd");
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluent_bit_chunk::Chunk;
    use proptest::prelude::*;
    use rmpv::Value as V;

    /// The metadata map of a one-record chunk with this metadata.
    fn chunk_with_meta(meta: &V) -> Vec<u8> {
        let mut t = 1_700_000_000u32.to_be_bytes().to_vec();
        t.extend_from_slice(&0u32.to_be_bytes());
        let ev = V::Array(vec![
            V::Array(vec![V::Ext(0, t), meta.clone()]),
            V::Map(vec![]),
        ]);
        let mut b = Vec::new();
        rmpv::encode::write_value(&mut b, &ev).unwrap();
        b
    }

    fn leaf() -> impl Strategy<Value = V> {
        prop_oneof![
            Just(V::Nil),
            any::<bool>().prop_map(V::Boolean),
            (0u64..3).prop_map(V::from),
            any::<i64>().prop_map(V::from),
            (-1e3f64..1e3).prop_map(V::F64),
            prop_oneof![Just(String::new()), ".{0,4}", "1[0-9]{2}"]
                .prop_map(|s| V::from(s.as_str())),
            proptest::collection::vec(any::<u8>(), 0..3).prop_map(V::Binary),
        ]
    }

    /// Mostly scalars, sometimes a container.
    fn value() -> impl Strategy<Value = V> {
        prop_oneof![
            8 => leaf(),
            1 => proptest::collection::vec(leaf(), 0..3).prop_map(V::Array),
            1 => proptest::collection::vec(("[ab]", leaf()), 0..3)
                .prop_map(|m| V::Map(m.into_iter().map(|(k, v)| (V::from(k.as_str()), v)).collect())),
        ]
    }

    fn key() -> impl Strategy<Value = V> {
        prop_oneof![
            6 => prop_oneof![
                Just("attributes"), Just("timestamp"), Just("observed_timestamp"),
                Just("severity_number"), Just("severity_text"), Just("dropped_attributes_count"),
                Just("trace_flags"), Just("trace_id"), Just("span_id"), Just("event_name"),
                Just("other"),
            ].prop_map(V::from),
            1 => (0u64..3).prop_map(V::from),
            1 => Just(V::Array(vec![V::from("attributes")])),
        ]
    }

    fn attributes() -> impl Strategy<Value = V> {
        proptest::collection::vec(
            (prop_oneof![
                6 => prop_oneof![Just("http.route"), Just("a.b"), Just("event_name"), Just("drop.me"), Just("x")]
                    .prop_map(V::from),
                1 => (0u64..3).prop_map(V::from),
                1 => Just(V::Map(vec![])),
            ], value()),
            0..5,
        )
        .prop_map(V::Map)
    }

    /// An `otlp` map: its fields in any order, repeated, with values of any kind.
    fn otlp_map() -> impl Strategy<Value = V> {
        proptest::collection::vec(
            prop_oneof![
                3 => (key(), value()),
                1 => (Just(V::from("attributes")), attributes()),
            ],
            0..8,
        )
        .prop_map(V::Map)
    }

    /// Record metadata: the `otlp` map among other keys, maybe twice, maybe not a map.
    fn meta() -> impl Strategy<Value = V> {
        proptest::collection::vec(
            prop_oneof![
                2 => otlp_map().prop_map(|m| (V::from("otlp"), m)),
                1 => leaf().prop_map(|v| (V::from("otlp"), v)),
                1 => (prop_oneof![Just(V::from("x")), Just(V::Map(vec![]))], value()),
            ],
            0..3,
        )
        .prop_map(V::Map)
    }

    fn otlp_config() -> Otlp {
        Otlp::new(&OtlpConfig {
            log_drop: Some("drop.me".into()),
            ..Default::default()
        })
        .unwrap()
        .unwrap()
    }

    proptest! {
        /// The one pass over the `otlp` map reads what the views read, or declines.
        #[test]
        fn one_pass_reads_what_views_read(meta in meta()) {
            let bytes = chunk_with_meta(&meta);
            let rec = Chunk::new(&bytes).records().next().unwrap().unwrap();
            let meta = rec.event.metadata;
            let o = otlp_config();
            let view = match meta.get("otlp") {
                Some(ValueRef::Map(m)) => Some(m),
                _ => None,
            };
            let found = find_otlp(meta);
            prop_assert_eq!(found.map(|(_, n)| n as usize), view.map(|m| m.len()));
            if let (Some((t, n)), Some(view)) = (found, view) {
                let (mut f1, mut md1) = (Fields::default(), Pairs::default());
                let (mut f2, mut md2) = (Fields::default(), Pairs::default());
                o.fields_by_views(view, &mut f2, &mut md2);
                if o.fields_in_one_pass(t, n, &mut f1, &mut md1).is_some() {
                    f1.attrs = None;
                    f2.attrs = None;
                    prop_assert_eq!(format!("{f1:?}"), format!("{f2:?}"));
                    prop_assert_eq!(md1.as_slice(), md2.as_slice());
                }
            }
        }
    }

    /// What Fluent Bit's `opentelemetry` input writes takes the one pass.
    #[test]
    fn fluent_bit_s_otlp_map_takes_the_one_pass() {
        let otlp = V::Map(vec![
            (
                V::from("observed_timestamp"),
                V::from(1_796_000_000_000_001_000u64),
            ),
            (V::from("timestamp"), V::from(1_796_000_000_000_000_000u64)),
            (V::from("severity_number"), V::from(9)),
            (V::from("severity_text"), V::from("INFO")),
            (
                V::from("attributes"),
                V::Map(vec![
                    (V::from("http.route"), V::from("/cart")),
                    (V::from("drop.me"), V::from(1)),
                    (V::from("duration_ms"), V::F64(12.5)),
                ]),
            ),
            (V::from("trace_id"), V::Binary(vec![1; 16])),
            (V::from("span_id"), V::Binary(vec![2; 8])),
            (V::from("trace_flags"), V::from(1)),
        ]);
        let bytes = chunk_with_meta(&V::Map(vec![(V::from("otlp"), otlp)]));
        let rec = Chunk::new(&bytes).records().next().unwrap().unwrap();
        let (t, n) = find_otlp(rec.event.metadata).unwrap();
        let (mut f, mut md) = (Fields::default(), Pairs::default());
        assert!(otlp_config()
            .fields_in_one_pass(t, n, &mut f, &mut md)
            .is_some());
        assert_eq!(
            md.as_slice(),
            [
                ("http_route".to_string(), "/cart".to_string()),
                ("duration_ms".to_string(), "12.5".to_string())
            ]
        );
        assert!(matches!(f.sev_text, Some(ValueRef::Str(s)) if s.as_bytes() == b"INFO"));
        assert!(matches!(f.trace, Some(ValueRef::Bin(b)) if b == [1; 16]));
    }

    fn name(s: &str) -> Option<String> {
        let mut o = String::new();
        loki_name(s, &mut o).then_some(o)
    }

    #[test]
    fn names_follow_the_prometheus_label_namer() {
        assert_eq!(name("service.name").unwrap(), "service_name");
        assert_eq!(name("a..b").unwrap(), "a_b");
        assert_eq!(name("a__b").unwrap(), "a_b");
        assert_eq!(name("héllo").unwrap(), "h_llo");
        assert_eq!(name("a.").unwrap(), "a_");
        assert_eq!(name("123abc").unwrap(), "key_123abc");
        assert_eq!(name("1.x").unwrap(), "key_1_x");
        assert_eq!(name("_foo").unwrap(), "_foo");
        assert_eq!(name("__foo").unwrap(), "_foo");
        assert_eq!(name("__x.y__").unwrap(), "__x_y__");
        assert_eq!(name(""), None);
        assert_eq!(name("."), None);
        assert_eq!(name("___"), None);
    }

    #[test]
    fn doubles_as_go_writes_them() {
        let f = |x: f64| {
            let mut s = String::new();
            float(x, &mut s);
            s
        };
        assert_eq!(f(1.5), "1.5");
        assert_eq!(f(100.0), "100");
        assert_eq!(f(1e21), "1e+21");
        assert_eq!(f(1e-7), "1e-7");
        assert_eq!(f(1.5e-7), "1.5e-7");
        assert_eq!(f(0.000001), "0.000001");
        assert_eq!(f(123456789.125), "123456789.125");
        assert_eq!(f(-0.0), "-0");
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(f64::INFINITY), "Infinity");
        assert_eq!(f(f64::NEG_INFINITY), "-Infinity");
    }

    #[test]
    fn strings_are_escaped_as_go_escapes_them() {
        let mut s = String::new();
        go_string(b"a\"\\\n\r\t\x08\x0c\x01<>&\xe2\x80\xa8\xff", &mut s);
        assert_eq!(s, r#""a\"\\\n\r\t\b\f\u0001<>&\u2028\ufffd""#);
    }
}
