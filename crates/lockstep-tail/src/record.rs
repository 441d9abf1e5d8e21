//! The records of the waiting queue. One spool record each; the first byte says which:
//!
//! ```text
//! b'P' fingerprint u32 LE, trace id [16], facts (TraceFacts::encode), line   a line whose trace is waiting
//! b'K' line                                                                  a line already kept (no trace id,
//!                                                                            or a late line of a kept trace)
//! b'D' count u32 LE, count × (trace id [16], keep u8)                        decisions, in the order made
//! b'F' count u32 LE, count × trace id [16]                                   trace ids a decision feed
//!                                                                            reported kept (durable
//!                                                                            before the feed's 200)
//!
//! line = tag length u16 LE, tag, event
//! ```
//! `event` is the Fluent Bit event exactly as the flush chunk held it
//! (`[[EventTime, metadata], body]` or the legacy `[time, body]`): a line is mapped to its
//! Loki entry only when its trace is kept, so a dropped line is never rendered.
//! `fingerprint` names the policy the facts were computed under: after a restart with
//! another policy, those facts cannot be read (their bits name other rules).

use lockstep_policy::TraceFacts;

pub const PENDING: u8 = b'P';
pub const KEPT: u8 = b'K';
pub const DECISIONS: u8 = b'D';
pub const REPORTED: u8 = b'F';

/// One record of the waiting queue, borrowed.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitRecord<'a> {
    Pending {
        fingerprint: u32,
        trace: [u8; 16],
        facts: TraceFacts,
        tag: &'a [u8],
        event: &'a [u8],
    },
    Kept {
        tag: &'a [u8],
        event: &'a [u8],
    },
    Decisions(Decisions<'a>),
    /// Trace ids a decision feed reported kept.
    Reported(Reported<'a>),
}

/// The trace ids of an `F` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported<'a>(&'a [u8]);

impl<'a> Reported<'a> {
    pub fn iter(&self) -> impl Iterator<Item = [u8; 16]> + 'a {
        self.0.chunks_exact(16).map(|c| {
            let mut t = [0u8; 16];
            t.copy_from_slice(c);
            t
        })
    }
    pub fn len(&self) -> usize {
        self.0.len() / 16
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The decisions of a `D` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decisions<'a>(&'a [u8]);

impl<'a> Decisions<'a> {
    pub fn iter(&self) -> impl Iterator<Item = ([u8; 16], bool)> + 'a {
        self.0.chunks_exact(17).map(|c| {
            let mut t = [0u8; 16];
            t.copy_from_slice(&c[..16]);
            (t, c[16] != 0)
        })
    }
    pub fn len(&self) -> usize {
        self.0.len() / 17
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("empty waiting-queue record")]
    Empty,
    #[error("unknown waiting-queue record kind {0:#04x} at byte 0 (written by a newer lockstep?)")]
    Kind(u8),
    #[error("truncated waiting-queue record: {what} at byte {offset}")]
    Truncated { what: &'static str, offset: usize },
}

/// Appends a line whose trace is waiting. A tag longer than 65,535 bytes is cut there.
///
/// `group` is the raw group-start event of the line's group (OTLP resource and scope),
/// or empty: stored before the event, so the line reads back as a chunk of its group's
/// start and itself (`Chunk::records` gives the record with its group).
pub fn write_pending(
    out: &mut Vec<u8>,
    fingerprint: u32,
    trace: &[u8; 16],
    facts: &TraceFacts,
    tag: &[u8],
    group: &[u8],
    event: &[u8],
) {
    out.push(PENDING);
    out.extend_from_slice(&fingerprint.to_le_bytes());
    out.extend_from_slice(trace);
    facts.encode(out);
    write_line(out, tag, group, event);
}

/// Appends a line already kept (`group` as for [`write_pending`]).
pub fn write_kept(out: &mut Vec<u8>, tag: &[u8], group: &[u8], event: &[u8]) {
    out.push(KEPT);
    write_line(out, tag, group, event);
}

fn write_line(out: &mut Vec<u8>, tag: &[u8], group: &[u8], event: &[u8]) {
    let tag = &tag[..tag.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(tag.len() as u16).to_le_bytes());
    out.extend_from_slice(tag);
    out.extend_from_slice(group);
    out.extend_from_slice(event);
}

fn read_line(b: &[u8], at: usize) -> Result<(&[u8], &[u8]), RecordError> {
    let trunc = RecordError::Truncated {
        what: "tag",
        offset: at,
    };
    let n = b.get(at..at + 2).ok_or(trunc.clone())?;
    let n = usize::from(u16::from_le_bytes([n[0], n[1]]));
    let tag = b.get(at + 2..at + 2 + n).ok_or(trunc)?;
    Ok((tag, &b[at + 2 + n..]))
}

/// One `D` record.
pub fn write_decisions(out: &mut Vec<u8>, decisions: &[([u8; 16], bool)]) {
    out.push(DECISIONS);
    out.extend_from_slice(&(decisions.len() as u32).to_le_bytes());
    for (t, keep) in decisions {
        out.extend_from_slice(t);
        out.push(u8::from(*keep));
    }
}

/// One `F` record.
pub fn write_reported(out: &mut Vec<u8>, ids: &[[u8; 16]]) {
    out.push(REPORTED);
    out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    for t in ids {
        out.extend_from_slice(t);
    }
}

/// The body of a record that is `count u32 LE` then `count` entries of `width` bytes.
fn counted<'a>(b: &'a [u8], width: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
    let trunc = |what, offset| RecordError::Truncated { what, offset };
    let n: [u8; 4] = b
        .get(1..5)
        .and_then(|c| c.try_into().ok())
        .ok_or(trunc("count", 1))?;
    let body = &b[5..];
    if body.len() != (u32::from_le_bytes(n) as usize).saturating_mul(width) {
        return Err(trunc(what, 5));
    }
    Ok(body)
}

/// Reads one record. Never panics.
pub fn parse(b: &[u8]) -> Result<WaitRecord<'_>, RecordError> {
    let trunc = |what, offset| RecordError::Truncated { what, offset };
    match *b.first().ok_or(RecordError::Empty)? {
        PENDING => {
            let fingerprint = u32::from_le_bytes(
                b.get(1..5)
                    .ok_or(trunc("fingerprint", 1))?
                    .try_into()
                    .map_err(|_| trunc("fingerprint", 1))?,
            );
            let mut trace = [0u8; 16];
            trace.copy_from_slice(b.get(5..21).ok_or(trunc("trace id", 5))?);
            let (facts, used) =
                TraceFacts::decode(Some(trace), &b[21..]).ok_or(trunc("facts", 21))?;
            let (tag, event) = read_line(b, 21 + used)?;
            Ok(WaitRecord::Pending {
                fingerprint,
                trace,
                facts,
                tag,
                event,
            })
        }
        KEPT => {
            let (tag, event) = read_line(b, 1)?;
            Ok(WaitRecord::Kept { tag, event })
        }
        DECISIONS => Ok(WaitRecord::Decisions(Decisions(counted(
            b,
            17,
            "decisions",
        )?))),
        REPORTED => Ok(WaitRecord::Reported(Reported(counted(
            b,
            16,
            "reported ids",
        )?))),
        k => Err(RecordError::Kind(k)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_ones_are_errors() {
        let mut facts = TraceFacts::new(Some([3; 16]));
        facts.merge(&TraceFacts::new(Some([3; 16])));
        let mut b = Vec::new();
        write_pending(
            &mut b,
            0xdead_beef,
            &[3; 16],
            &facts,
            b"app.x",
            b"",
            b"event",
        );
        match parse(&b).unwrap() {
            WaitRecord::Pending {
                fingerprint,
                trace,
                facts: f,
                tag,
                event,
            } => {
                assert_eq!(
                    (fingerprint, trace, tag, event),
                    (0xdead_beef, [3; 16], &b"app.x"[..], &b"event"[..])
                );
                assert_eq!(f, facts);
            }
            other => panic!("{other:?}"),
        }
        for cut in 0..b.len() - 10 {
            assert!(parse(&b[..cut]).is_err(), "{cut}");
        }
        let mut d = Vec::new();
        write_decisions(&mut d, &[([1; 16], true), ([2; 16], false)]);
        let WaitRecord::Decisions(ds) = parse(&d).unwrap() else {
            panic!()
        };
        assert_eq!(
            ds.iter().collect::<Vec<_>>(),
            vec![([1; 16], true), ([2; 16], false)]
        );
        assert!(parse(&d[..d.len() - 1]).is_err());
        assert_eq!(parse(b"Xyz"), Err(RecordError::Kind(b'X')));
        let mut k = Vec::new();
        write_kept(&mut k, b"t", b"", b"e");
        assert_eq!(
            parse(&k),
            Ok(WaitRecord::Kept {
                tag: b"t",
                event: b"e"
            })
        );
        assert!(parse(&k[..2]).is_err());
        let mut f = Vec::new();
        write_reported(&mut f, &[[4; 16], [5; 16]]);
        let WaitRecord::Reported(ids) = parse(&f).unwrap() else {
            panic!()
        };
        assert_eq!(ids.iter().collect::<Vec<_>>(), vec![[4; 16], [5; 16]]);
        assert!(parse(&f[..f.len() - 1]).is_err());
    }
}
