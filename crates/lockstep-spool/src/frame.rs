//! On-disk record framing and the segment reader.
//!
//! Everything here is pure: it reads through [`ReadAt`], which is implemented for files
//! (positional reads, no shared cursor) and for byte slices (tests, fuzzing).
//!
//! Segment file: a 16-byte header (`b"LKSPSEG1"`, first sequence number u64 LE), then frames.
//!
//! Frame (all integers little-endian):
//! ```text
//! 0   u32  len | END_OF_BATCH (bit 31 set on the last record of an append)
//! 4   u32  CRC32C over bytes 0..4, 8..24 and the payload
//! 8   u64  sequence number (strictly increasing in a segment, starts at 1)
//! 16  u64  timestamp, ns since the Unix epoch
//! 24  ...  payload (len bytes)
//! ```

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Segment file magic.
pub const SEG_MAGIC: &[u8; 8] = b"LKSPSEG1";
/// Length of the segment header.
pub const SEG_HEADER_LEN: u64 = 16;
/// Length of a frame header.
pub const FRAME_HEADER_LEN: u64 = 24;
/// Flag on the length word of the last record of an append.
pub const END_OF_BATCH: u32 = 1 << 31;
/// Largest payload length a frame can express.
pub const MAX_FRAME_PAYLOAD: u32 = END_OF_BATCH - 1;
/// While resynchronising after a corrupt frame, a candidate frame's sequence number must
/// lie in `[expected, expected + RESYNC_SEQ_WINDOW)`; this keeps the scan linear (the CRC
/// is computed only for plausible candidates) and rejects stale or random bytes.
pub const RESYNC_SEQ_WINDOW: u64 = 1 << 32;

const READ_CHUNK: usize = 256 * 1024;

/// Positional reads (like `pread`): never moves a shared cursor, so one open file can be
/// read by several threads.
pub trait ReadAt {
    /// Read up to `buf.len()` bytes at `offset`; 0 means end of data.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl ReadAt for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Ok(off) = usize::try_from(offset) else {
            return Ok(0);
        };
        if off >= self.len() {
            return Ok(0);
        }
        let n = buf.len().min(self.len() - off);
        buf[..n].copy_from_slice(&self[off..off + n]);
        Ok(n)
    }
}

/// Encode the segment header.
pub fn segment_header(first_seq: u64) -> [u8; SEG_HEADER_LEN as usize] {
    let mut h = [0u8; SEG_HEADER_LEN as usize];
    h[..8].copy_from_slice(SEG_MAGIC);
    h[8..].copy_from_slice(&first_seq.to_le_bytes());
    h
}

/// Append one frame to `out`.
pub fn encode_frame(out: &mut Vec<u8>, seq: u64, ts_ns: u64, payload: &[u8], end_of_batch: bool) {
    debug_assert!(payload.len() <= MAX_FRAME_PAYLOAD as usize);
    let raw_len = payload.len() as u32 | if end_of_batch { END_OF_BATCH } else { 0 };
    let start = out.len();
    out.extend_from_slice(&raw_len.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&ts_ns.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[start..start + 4]), &out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A read-through buffer over a [`ReadAt`] source, bounded by `end`.
pub struct Window<'a, R: ReadAt + ?Sized> {
    src: &'a R,
    end: u64,
    start: u64,
    buf: Vec<u8>,
}

impl<'a, R: ReadAt + ?Sized> Window<'a, R> {
    /// A window over `src` that never reads at or past `end`.
    pub fn new(src: &'a R, end: u64) -> Self {
        Window {
            src,
            end,
            start: 0,
            buf: Vec::new(),
        }
    }

    /// The bound given at creation, lowered if the source turned out shorter.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Bytes `[pos, pos + n)`, or `None` when they lie past the end.
    pub fn get(&mut self, pos: u64, n: usize) -> io::Result<Option<&[u8]>> {
        let Some(stop) = pos.checked_add(n as u64) else {
            return Ok(None);
        };
        if stop > self.end {
            return Ok(None);
        }
        let have = pos >= self.start && stop <= self.start + self.buf.len() as u64;
        if !have {
            let want = (n.max(READ_CHUNK) as u64).min(self.end - pos) as usize;
            self.buf.clear();
            self.buf.resize(want, 0);
            let mut got = 0;
            while got < want {
                match self.src.read_at(&mut self.buf[got..], pos + got as u64) {
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.buf.truncate(got);
            self.start = pos;
            if got < want {
                // The source is shorter than announced (e.g. truncated under a reader).
                self.end = pos + got as u64;
                if stop > self.end {
                    return Ok(None);
                }
            }
        }
        let off = (pos - self.start) as usize;
        Ok(Some(&self.buf[off..off + n]))
    }
}

/// A frame that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// Offset of the frame header.
    pub pos: u64,
    /// Payload length.
    pub len: u32,
    /// Sequence number.
    pub seq: u64,
    /// Timestamp (ns since the epoch).
    pub ts_ns: u64,
    /// Last record of its append.
    pub end_of_batch: bool,
}

impl FrameInfo {
    /// Offset just past the frame.
    pub fn end(&self) -> u64 {
        self.pos + FRAME_HEADER_LEN + u64::from(self.len)
    }
    /// Offset of the payload.
    pub fn payload_pos(&self) -> u64 {
        self.pos + FRAME_HEADER_LEN
    }
}

/// Check the frame at `pos`: `Ok(None)` if it is not a valid frame with a sequence number
/// in `[min_seq, min_seq + RESYNC_SEQ_WINDOW)` and a payload of at most `max_len` bytes.
pub fn check_frame<R: ReadAt + ?Sized>(
    win: &mut Window<'_, R>,
    pos: u64,
    min_seq: u64,
    max_len: u32,
) -> io::Result<Option<FrameInfo>> {
    let Some(h) = win.get(pos, FRAME_HEADER_LEN as usize)? else {
        return Ok(None);
    };
    let raw_len = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
    let ts_ns = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
    let len = raw_len & MAX_FRAME_PAYLOAD;
    if len > max_len || seq < min_seq || seq - min_seq >= RESYNC_SEQ_WINDOW {
        return Ok(None);
    }
    let total = FRAME_HEADER_LEN as usize + len as usize;
    let Some(f) = win.get(pos, total)? else {
        return Ok(None);
    };
    let actual = crc32c::crc32c_append(crc32c::crc32c(&f[0..4]), &f[8..]);
    if actual != crc {
        return Ok(None);
    }
    Ok(Some(FrameInfo {
        pos,
        len,
        seq,
        ts_ns,
        end_of_batch: raw_len & END_OF_BATCH != 0,
    }))
}

/// What the reader found next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// A valid frame.
    Frame(FrameInfo),
    /// Bytes `[pos, next)` hold no valid frame; a valid frame starts at `next`.
    Corrupt {
        /// Start of the bad span.
        pos: u64,
        /// Start of the next valid frame.
        next: u64,
    },
    /// Bytes `[pos, end)` hold no valid frame (torn tail, zero fill, or garbage).
    Tail {
        /// Start of the bad span.
        pos: u64,
        /// End of the data.
        end: u64,
    },
}

/// Sequential reader of the frames in `[start, end)` of one segment.
///
/// Terminates on any input: every call advances the position by at least one byte.
pub struct SegmentReader<'a, R: ReadAt + ?Sized> {
    win: Window<'a, R>,
    pos: u64,
    min_seq: u64,
    max_len: u32,
}

impl<'a, R: ReadAt + ?Sized> SegmentReader<'a, R> {
    /// Read frames from `start` up to `end`, expecting sequence numbers `>= min_seq`.
    pub fn new(src: &'a R, start: u64, end: u64, min_seq: u64, max_len: u32) -> Self {
        SegmentReader {
            win: Window::new(src, end),
            pos: start,
            min_seq,
            max_len,
        }
    }

    /// Current position.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// The payload of a frame just returned (still in the read buffer).
    pub fn payload(&mut self, f: &FrameInfo) -> io::Result<&[u8]> {
        match self.win.get(f.payload_pos(), f.len as usize)? {
            Some(p) => Ok(p),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("payload of frame at byte {} vanished", f.pos),
            )),
        }
    }

    /// The next item, or `None` at the end.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> io::Result<Option<Item>> {
        let end = self.win.end();
        if self.pos >= end {
            return Ok(None);
        }
        if let Some(f) = check_frame(&mut self.win, self.pos, self.min_seq, self.max_len)? {
            self.pos = f.end();
            self.min_seq = f.seq + 1;
            return Ok(Some(Item::Frame(f)));
        }
        // Resynchronise: find the next offset holding a valid frame.
        let bad = self.pos;
        let mut q = bad + 1;
        while q + FRAME_HEADER_LEN <= self.win.end() {
            if check_frame(&mut self.win, q, self.min_seq, self.max_len)?.is_some() {
                self.pos = q;
                return Ok(Some(Item::Corrupt { pos: bad, next: q }));
            }
            q += 1;
        }
        let end = self.win.end().max(bad);
        self.pos = end;
        Ok(Some(Item::Tail { pos: bad, end }))
    }
}

/// Result of scanning a whole segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegScan {
    /// The header is present and names `first_seq`.
    pub header_ok: bool,
    /// The file is shorter than a segment header.
    pub header_missing: bool,
    /// End of the last complete append (last frame flagged END_OF_BATCH); everything
    /// after it is a torn tail (or, for a live segment read by another process, an
    /// append in progress).
    pub committed_end: u64,
    /// Valid records with `seq >= acked_next_seq` before `committed_end`.
    pub records: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Offset and timestamp of the first of them.
    pub first_unacked: Option<(u64, u64)>,
    /// Highest sequence number before `committed_end`.
    pub last_seq: Option<u64>,
    /// Corrupt spans before `committed_end` and after the last acknowledged record.
    pub corrupt_records: u64,
    /// Their length in bytes.
    pub corrupt_bytes: u64,
    /// `file_len - committed_end`.
    pub tail_bytes: u64,
}

/// Scan a segment file of `file_len` bytes whose name says `first_seq`.
pub fn scan_segment<R: ReadAt + ?Sized>(
    src: &R,
    file_len: u64,
    first_seq: u64,
    acked_next_seq: u64,
    max_len: u32,
) -> io::Result<SegScan> {
    let mut out = SegScan::default();
    let mut win = Window::new(src, file_len);
    match win.get(0, SEG_HEADER_LEN as usize)? {
        None => {
            out.header_missing = true;
            out.tail_bytes = win.end();
            return Ok(out);
        }
        Some(h) => out.header_ok = h == segment_header(first_seq),
    }
    let end = win.end();
    drop(win);
    out.committed_end = SEG_HEADER_LEN;
    if !out.header_ok {
        out.corrupt_records += 1;
        out.corrupt_bytes += SEG_HEADER_LEN;
    }
    // Counters of the append in progress, committed at its END_OF_BATCH frame.
    let mut p_records = 0u64;
    let mut p_bytes = 0u64;
    let mut p_first: Option<(u64, u64)> = None;
    let mut p_corrupt = 0u64;
    let mut p_corrupt_bytes = 0u64;
    let mut r = SegmentReader::new(src, SEG_HEADER_LEN, end, first_seq, max_len);
    while let Some(item) = r.next()? {
        match item {
            Item::Frame(f) => {
                if f.seq < acked_next_seq {
                    // Acknowledged: corruption before it was already passed over.
                    p_corrupt = 0;
                    p_corrupt_bytes = 0;
                    out.corrupt_records = 0;
                    out.corrupt_bytes = 0;
                } else {
                    p_records += 1;
                    p_bytes += u64::from(f.len);
                    if p_first.is_none() {
                        p_first = Some((f.pos, f.ts_ns));
                    }
                }
                if f.end_of_batch {
                    out.records += p_records;
                    out.bytes += p_bytes;
                    if out.first_unacked.is_none() {
                        out.first_unacked = p_first;
                    }
                    out.last_seq = Some(f.seq);
                    out.corrupt_records += p_corrupt;
                    out.corrupt_bytes += p_corrupt_bytes;
                    out.committed_end = f.end();
                    p_records = 0;
                    p_bytes = 0;
                    p_first = None;
                    p_corrupt = 0;
                    p_corrupt_bytes = 0;
                }
            }
            Item::Corrupt { pos, next } => {
                p_corrupt += 1;
                p_corrupt_bytes += next - pos;
            }
            Item::Tail { .. } => break,
        }
    }
    out.tail_bytes = end - out.committed_end;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(first: u64, batches: &[&[&[u8]]]) -> Vec<u8> {
        let mut v = segment_header(first).to_vec();
        let mut seq = first;
        for b in batches {
            for (i, p) in b.iter().enumerate() {
                encode_frame(&mut v, seq, 7, p, i + 1 == b.len());
                seq += 1;
            }
        }
        v
    }

    #[test]
    fn scan_counts_committed_records() {
        let v = seg(5, &[&[b"a", b"bb"], &[b"ccc"]]);
        let s = scan_segment(&v[..], v.len() as u64, 5, 0, 1024).unwrap();
        assert!(s.header_ok);
        assert_eq!((s.records, s.bytes, s.last_seq), (3, 6, Some(7)));
        assert_eq!(s.committed_end, v.len() as u64);
        assert_eq!(s.first_unacked, Some((SEG_HEADER_LEN, 7)));
    }

    #[test]
    fn partial_append_is_tail() {
        let mut v = seg(1, &[&[b"a"]]);
        let good = v.len() as u64;
        encode_frame(&mut v, 2, 0, b"x", false); // append cut before its END frame
        let s = scan_segment(&v[..], v.len() as u64, 1, 0, 1024).unwrap();
        assert_eq!(s.committed_end, good);
        assert_eq!(s.records, 1);
        assert_eq!(s.tail_bytes, v.len() as u64 - good);
    }

    #[test]
    fn flipped_bit_is_skipped() {
        let mut v = seg(1, &[&[b"hello"], &[b"world"], &[b"third"]]);
        v[SEG_HEADER_LEN as usize + 24 + 29 + 2] ^= 0x10; // payload of the 2nd frame
        let s = scan_segment(&v[..], v.len() as u64, 1, 0, 1024).unwrap();
        assert_eq!((s.records, s.corrupt_records, s.corrupt_bytes), (2, 1, 29));
        assert_eq!(s.tail_bytes, 0);
    }

    #[test]
    fn acked_records_not_counted() {
        let v = seg(1, &[&[b"a", b"b"], &[b"c"]]);
        let s = scan_segment(&v[..], v.len() as u64, 1, 2, 1024).unwrap();
        assert_eq!(s.records, 2);
        assert_eq!(s.first_unacked.unwrap().0, SEG_HEADER_LEN + 25);
    }
}
