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

impl SpooledEntry {
    /// Appends the payload bytes of this entry to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        // Serialising owned strings and vectors into a Vec cannot fail.
        rmp_serde::encode::write(
            out,
            &WireRef {
                v: ENTRY_VERSION,
                e: self,
            },
        )
        .expect("encoding a SpooledEntry into a Vec cannot fail");
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

    proptest! {
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
