//! The spooled entry: one Loki entry, already mapped from a Fluent Bit record, as it
//! is written to the spool (one spool record per entry) and read back by the drain.

use serde::{Deserialize, Serialize};

/// Format version written as the first field of every payload.
pub const ENTRY_VERSION: u8 = 1;

/// One entry bound for Loki, with everything needed to push it: its tenant, its
/// stream's labels, and the entry itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SpooledEntry {
    /// `X-Scope-OrgID`, or `None` for no header.
    pub tenant: Option<String>,
    /// Stream labels: valid Loki names (`[a-zA-Z_][a-zA-Z0-9_]*`), non-empty values,
    /// sorted by name, no duplicate names.
    pub labels: Vec<(String, String)>,
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    /// The log line (valid UTF-8).
    pub line: String,
    /// Structured metadata, in order.
    pub structured_metadata: Vec<(String, String)>,
}

/// The payload as serde writes it: the format's definition, and the oracle of
/// [`encode_entry`] in tests.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Serialize)]
struct WireRef<'a> {
    v: u8,
    e: &'a SpooledEntry,
}

#[derive(Deserialize)]
struct Wire {
    // Checked by `decode` before the rest is read.
    #[allow(dead_code)]
    v: u8,
    e: SpooledEntry,
}

/// A payload that is not a spooled entry of a known version.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// Not decodable.
    #[error("spooled entry at sequence {seq}: {detail}")]
    Decode {
        /// Spool sequence number.
        seq: u64,
        /// What went wrong.
        detail: String,
    },
    /// Written by a newer version.
    #[error("spooled entry at sequence {seq}: format version {version} is not {ENTRY_VERSION}")]
    Version {
        /// Spool sequence number.
        seq: u64,
        /// The version found.
        version: u8,
    },
}

/// Appends the payload of an entry given by its parts to `out`: the bytes
/// [`SpooledEntry::encode_into`] writes for the same entry (tested against serde's
/// encoding), without building the entry. Flush writes every record this way: owning
/// the strings first cost an allocation per label, value and line.
pub fn encode_entry<'a>(
    out: &mut Vec<u8>,
    tenant: Option<&str>,
    labels: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    ts_ns: i64,
    line: &str,
    structured_metadata: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) {
    use rmp::encode as w;
    // Writing into a Vec cannot fail (rmp's errors are the writer's).
    fn pairs<'a>(out: &mut Vec<u8>, it: impl ExactSizeIterator<Item = (&'a str, &'a str)>) {
        let _ = w::write_array_len(out, it.len() as u32);
        for (k, v) in it {
            let _ = w::write_array_len(out, 2);
            let _ = w::write_str(out, k);
            let _ = w::write_str(out, v);
        }
    }
    // [v, [tenant, labels, ts_ns, line, structured_metadata]], as serde writes the
    // structs (as arrays, in field order).
    let _ = w::write_array_len(out, 2);
    let _ = w::write_uint(out, u64::from(ENTRY_VERSION));
    let _ = w::write_array_len(out, 5);
    match tenant {
        Some(t) => {
            let _ = w::write_str(out, t);
        }
        None => {
            let _ = w::write_nil(out);
        }
    }
    pairs(out, labels);
    let _ = w::write_sint(out, ts_ns);
    let _ = w::write_str(out, line);
    pairs(out, structured_metadata);
}

/// A spooled entry read in place: strings borrowed from the payload, the label list
/// kept as its spooled bytes (the drain groups by them without decoding or allocating
/// them again for every entry of a stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    pub tenant: Option<&'a str>,
    /// The label list as spooled (a msgpack array of [name, value] pairs).
    pub labels_raw: &'a [u8],
    pub ts_ns: i64,
    pub line: &'a str,
    /// The structured metadata as spooled (same shape).
    pub metadata_raw: &'a [u8],
}

/// Reads a msgpack array of `[str, str]` pairs (already validated by [`EntryRef::read`]).
pub(crate) fn pairs_of(mut raw: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    let n = rmp::decode::read_array_len(&mut raw).unwrap_or(0);
    (0..n).map_while(move |_| {
        rmp::decode::read_array_len(&mut raw).ok()?;
        let (k, rest) = rmp::decode::read_str_from_slice(raw).ok()?;
        let (v, rest) = rmp::decode::read_str_from_slice(rest).ok()?;
        raw = rest;
        Some((k, v))
    })
}

impl<'a> EntryRef<'a> {
    /// Reads a payload written by [`encode_entry`] in place. `None` for anything else
    /// (another version, another encoding of the same values, corruption): the caller
    /// then decodes it with [`SpooledEntry::decode`], which says what it is. When this
    /// reads a payload, it reads the same entry `SpooledEntry::decode` does (tested).
    pub fn read(payload: &'a [u8]) -> Option<EntryRef<'a>> {
        use rmp::decode as r;
        let mut p = payload;
        if r::read_array_len(&mut p).ok()? != 2 || p.first()? != &ENTRY_VERSION {
            return None;
        }
        p = &p[1..];
        if r::read_array_len(&mut p).ok()? != 5 {
            return None;
        }
        let tenant = if p.first()? == &0xc0 {
            p = &p[1..];
            None
        } else {
            let (t, rest) = r::read_str_from_slice(p).ok()?;
            p = rest;
            Some(t)
        };
        let (labels_raw, rest) = split_pairs(p)?;
        p = rest;
        let ts_ns: i64 = r::read_int(&mut p).ok()?;
        let (line, rest) = r::read_str_from_slice(p).ok()?;
        let (metadata_raw, rest) = split_pairs(rest)?;
        rest.is_empty().then_some(EntryRef {
            tenant,
            labels_raw,
            ts_ns,
            line,
            metadata_raw,
        })
    }

    pub fn labels(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        pairs_of(self.labels_raw)
    }

    pub fn structured_metadata(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        pairs_of(self.metadata_raw)
    }
}

/// Reads a msgpack array length (fixarray, array 16, array 32) off the front of `p`.
#[inline]
fn array_len(p: &mut &[u8]) -> Option<u32> {
    let (&m, rest) = p.split_first()?;
    let (n, rest) = match m {
        0x90..=0x9f => (u32::from(m & 0x0f), rest),
        0xdc => (
            u32::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)),
            &rest[2..],
        ),
        0xdd => (
            u32::from_be_bytes(rest.get(..4)?.try_into().ok()?),
            &rest[4..],
        ),
        _ => return None,
    };
    *p = rest;
    Some(n)
}

/// Reads a msgpack string's bytes (fixstr, str 8, 16, 32) off the front of `p`, without
/// checking them as UTF-8.
#[inline]
fn str_bytes<'a>(p: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (&m, rest) = p.split_first()?;
    let (len, rest) = match m {
        0xa0..=0xbf => (usize::from(m & 0x1f), rest),
        0xd9 => (usize::from(*rest.first()?), &rest[1..]),
        0xda => (
            usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)),
            &rest[2..],
        ),
        0xdb => (
            u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize,
            &rest[4..],
        ),
        _ => return None,
    };
    let s = rest.get(..len)?;
    *p = &rest[len..];
    Some(s)
}

/// The pairs of a msgpack array of `[str, str]` pairs already validated by
/// [`EntryRef::read`], as bytes: the drain's encoding reads them so, without checking
/// them as UTF-8 again at every pass.
pub(crate) fn pair_bytes_of(mut raw: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let n = array_len(&mut raw).unwrap_or(0);
    (0..n).map_while(move |_| {
        array_len(&mut raw)?;
        let k = str_bytes(&mut raw)?;
        let v = str_bytes(&mut raw)?;
        Some((k, v))
    })
}

/// Splits a msgpack array of `[str, str]` pairs (strings valid UTF-8) off the front.
fn split_pairs(all: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut p = all;
    let n = array_len(&mut p)?;
    for _ in 0..n {
        if array_len(&mut p)? != 2 {
            return None;
        }
        std::str::from_utf8(str_bytes(&mut p)?).ok()?;
        std::str::from_utf8(str_bytes(&mut p)?).ok()?;
    }
    Some(all.split_at(all.len() - p.len()))
}

impl SpooledEntry {
    /// Appends the payload bytes of this entry to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_entry(
            out,
            self.tenant.as_deref(),
            self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            self.ts_ns,
            &self.line,
            self.structured_metadata
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
    }

    /// The payload bytes of this entry.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.line.len());
        self.encode_into(&mut out);
        out
    }

    /// Decodes a payload read back from the spool at sequence `seq`.
    pub fn decode(seq: u64, payload: &[u8]) -> Result<SpooledEntry, EntryError> {
        // The version first, on its own: a newer version may change the shape of
        // everything after it, and must be reported as newer (the drain holds the
        // queue), not as undecodable (the drain skips it).
        let mut head = payload;
        let version = rmp::decode::read_array_len(&mut head)
            .ok()
            .filter(|&n| n >= 1)
            .and_then(|_| rmp::decode::read_int::<u8, _>(&mut head).ok());
        match version {
            Some(ENTRY_VERSION) => {}
            Some(version) => return Err(EntryError::Version { seq, version }),
            None => {
                return Err(EntryError::Decode {
                    seq,
                    detail: "no format version at the start".into(),
                })
            }
        }
        let w: Wire = rmp_serde::from_slice(payload).map_err(|e| EntryError::Decode {
            seq,
            detail: e.to_string(),
        })?;
        Ok(w.e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn serde_encoding(e: &SpooledEntry) -> Vec<u8> {
        rmp_serde::to_vec(&WireRef {
            v: ENTRY_VERSION,
            e,
        })
        .unwrap()
    }

    proptest! {
        #[test]
        fn direct_encoding_is_serdes(tenant in proptest::option::of(".{0,40}"), line in ".{0,300}",
                      ts in prop_oneof![any::<i64>(), -200i64..200, Just(i64::MIN), Just(i64::MAX)],
                      labels in proptest::collection::vec(("[a-z_]{1,40}", ".{0,40}"), 0..20),
                      sm in proptest::collection::vec((".{0,5}", prop_oneof![".{0,8}", "[a-c]{250,260}", "[a-c]{65530,65540}"]), 0..3)) {
            let e = SpooledEntry { tenant, labels, ts_ns: ts, line, structured_metadata: sm };
            prop_assert_eq!(e.encode(), serde_encoding(&e));
        }

        #[test]
        fn read_in_place_is_decode(tenant in proptest::option::of(".{0,8}"), line in ".{0,40}", ts in any::<i64>(),
                      labels in proptest::collection::vec(("[a-z_]{1,5}", ".{0,5}"), 0..4),
                      sm in proptest::collection::vec((".{0,5}", ".{0,5}"), 0..4),
                      flip in any::<prop::sample::Index>(), to in any::<u8>()) {
            let e = SpooledEntry { tenant, labels, ts_ns: ts, line, structured_metadata: sm };
            let bytes = e.encode();
            let r = EntryRef::read(&bytes).unwrap();
            let owned = |it: &mut dyn Iterator<Item = (&str, &str)>| it.map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
            prop_assert_eq!(r.tenant, e.tenant.as_deref());
            prop_assert_eq!(owned(&mut r.labels()), e.labels.clone());
            prop_assert_eq!(r.ts_ns, e.ts_ns);
            prop_assert_eq!(r.line, e.line.as_str());
            prop_assert_eq!(owned(&mut r.structured_metadata()), e.structured_metadata.clone());
            let bytes_of = |raw| pair_bytes_of(raw).map(|(k, v)| (k.to_vec(), v.to_vec())).collect::<Vec<_>>();
            let as_bytes = |pairs: &[(String, String)]| pairs.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect::<Vec<_>>();
            prop_assert_eq!(bytes_of(r.metadata_raw), as_bytes(&e.structured_metadata));
            prop_assert_eq!(bytes_of(r.labels_raw), as_bytes(&e.labels));
            // A damaged payload: whatever the in-place reader accepts, serde reads the same.
            let mut bad = bytes.clone();
            let i = flip.index(bad.len());
            bad[i] = to;
            if let Some(r) = EntryRef::read(&bad) {
                let d = SpooledEntry::decode(1, &bad).unwrap();
                prop_assert_eq!(r.tenant, d.tenant.as_deref());
                prop_assert_eq!(owned(&mut r.labels()), d.labels);
                prop_assert_eq!(r.ts_ns, d.ts_ns);
                prop_assert_eq!(r.line, d.line.as_str());
                prop_assert_eq!(owned(&mut r.structured_metadata()), d.structured_metadata);
            }
        }

        #[test]
        fn round_trip(tenant in proptest::option::of(".{0,8}"), line in ".{0,40}", ts in any::<i64>(),
                      labels in proptest::collection::vec(("[a-z_]{1,5}", ".{1,5}"), 0..4),
                      sm in proptest::collection::vec((".{0,5}", ".{0,5}"), 0..4)) {
            let e = SpooledEntry { tenant, labels, ts_ns: ts, line, structured_metadata: sm };
            prop_assert_eq!(SpooledEntry::decode(7, &e.encode()).unwrap(), e);
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = SpooledEntry::decode(1, &bytes);
        }
    }

    #[test]
    fn other_version_is_named() {
        let mut bytes = SpooledEntry::default().encode();
        // [v, e]: fixarray(2), then v as a positive fixint.
        assert_eq!(bytes[1], ENTRY_VERSION);
        bytes[1] = 9;
        let err = SpooledEntry::decode(42, &bytes).unwrap_err().to_string();
        assert!(
            err.contains("sequence 42") && err.contains("version 9"),
            "{err}"
        );
    }

    /// A newer version whose entry has another shape is still a version error (held),
    /// never a decode error (skipped, so lost).
    #[test]
    fn newer_version_with_another_shape_is_a_version_error() {
        let newer = rmp_serde::to_vec(&(ENTRY_VERSION + 1, "a new layout", 3u32)).unwrap();
        assert!(matches!(
            SpooledEntry::decode(5, &newer),
            Err(EntryError::Version { seq: 5, version }) if version == ENTRY_VERSION + 1
        ));
        let mut bytes = SpooledEntry::default().encode();
        bytes.truncate(bytes.len() - 1);
        assert!(matches!(
            SpooledEntry::decode(6, &bytes),
            Err(EntryError::Decode { seq: 6, .. })
        ));
        assert!(matches!(
            SpooledEntry::decode(7, b"\xa3abc"),
            Err(EntryError::Decode { seq: 7, .. })
        ));
    }
}
