//! OTLP trace export bodies to trace ids.

use std::io::Read;

use serde::Deserialize;

pub type TraceId = [u8; 16];

/// The body's encoding, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

/// The body's `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    /// zlib (`Content-Encoding: deflate`, as the Python exporter sends it).
    Deflate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest body, before and after decompression.
    pub max_body_bytes: usize,
}

/// What one request reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Distinct valid trace ids, in first-seen order.
    pub trace_ids: Vec<TraceId>,
    /// Spans in the request.
    pub spans: u64,
    /// Spans whose trace id was invalid (all zero, or not 16 bytes): skipped.
    pub invalid_ids: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("the body is larger than {max} bytes after decompression")]
    TooLarge { max: usize },
    #[error("the {0} body does not decompress: {1}")]
    Decompress(&'static str, String),
    #[error("the body is not an ExportTraceServiceRequest in protobuf: {0}")]
    Protobuf(String),
    #[error("the body is not an ExportTraceServiceRequest in OTLP/JSON: {0}")]
    Json(String),
}

/// Decompresses (capped) and decodes one request body.
pub fn decode_body(
    body: &[u8],
    encoding: Encoding,
    compression: Compression,
    limits: &Limits,
) -> Result<Report, DecodeError> {
    let max = limits.max_body_bytes;
    if body.len() > max {
        return Err(DecodeError::TooLarge { max });
    }
    let owned;
    let plain: &[u8] = match compression {
        Compression::None => body,
        Compression::Gzip => {
            owned = inflate(flate2::read::MultiGzDecoder::new(body), "gzip", max)?;
            &owned
        }
        Compression::Deflate => {
            owned = inflate(flate2::read::ZlibDecoder::new(body), "deflate", max)?;
            &owned
        }
    };
    match encoding {
        Encoding::Protobuf => decode_proto(plain),
        Encoding::Json => decode_json(plain),
    }
}

/// Reads at most `max` bytes out of a decoder; one more is an error (never trust the
/// compressed size).
fn inflate(r: impl Read, what: &'static str, max: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    r.take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Decompress(what, e.to_string()))?;
    if out.len() > max {
        return Err(DecodeError::TooLarge { max });
    }
    Ok(out)
}

/// Collects ids, deduplicated in first-seen order (a request carries one id per span).
#[derive(Default)]
struct Ids {
    report: Report,
    seen: std::collections::HashSet<TraceId>,
}

impl Ids {
    fn span(&mut self, id: Option<TraceId>) {
        self.report.spans += 1;
        match id.filter(|t| t.iter().any(|&b| b != 0)) {
            Some(t) => {
                if self.seen.insert(t) {
                    self.report.trace_ids.push(t);
                }
            }
            None => self.report.invalid_ids += 1,
        }
    }
}

// The OTLP messages down to the trace id; prost skips every other field (and merges
// concatenated messages, as protobuf defines: Fluent Bit sends one request per trace
// context back to back in one body).
#[derive(Clone, PartialEq, prost::Message)]
struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResourceSpans {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ScopeSpans {
    #[prost(message, repeated, tag = "2")]
    spans: Vec<Span>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Span {
    #[prost(bytes = "vec", tag = "1")]
    trace_id: Vec<u8>,
}

fn decode_proto(b: &[u8]) -> Result<Report, DecodeError> {
    let req = <ExportTraceServiceRequest as prost::Message>::decode(b)
        .map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    let mut ids = Ids::default();
    for rs in &req.resource_spans {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                ids.span(<TraceId>::try_from(s.trace_id.as_slice()).ok());
            }
        }
    }
    Ok(ids.report)
}

// OTLP/JSON: lowerCamelCase keys (the snake_case ones are accepted too, as the
// Collector's decoder does); unknown keys ignored; ids as hex, any case.
#[derive(Deserialize)]
struct JsonRequest {
    #[serde(default, rename = "resourceSpans", alias = "resource_spans")]
    resource_spans: Vec<JsonResourceSpans>,
}

#[derive(Deserialize)]
struct JsonResourceSpans {
    #[serde(default, rename = "scopeSpans", alias = "scope_spans")]
    scope_spans: Vec<JsonScopeSpans>,
}

#[derive(Deserialize)]
struct JsonScopeSpans {
    #[serde(default)]
    spans: Vec<JsonSpan>,
}

#[derive(Deserialize)]
struct JsonSpan {
    #[serde(default, rename = "traceId", alias = "trace_id")]
    trace_id: Option<serde_json::Value>,
}

fn decode_json(b: &[u8]) -> Result<Report, DecodeError> {
    let req: JsonRequest =
        serde_json::from_slice(b).map_err(|e| DecodeError::Json(e.to_string()))?;
    let mut ids = Ids::default();
    for rs in &req.resource_spans {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let id = s.trace_id.as_ref().and_then(|v| v.as_str()).and_then(hex16);
                ids.span(id);
            }
        }
    }
    Ok(ids.report)
}

/// 32 hex digits, any case.
fn hex16(s: &str) -> Option<TraceId> {
    let b = s.as_bytes();
    if b.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let d = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
        out[i] = d(pair[0])? << 4 | d(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const L: Limits = Limits {
        max_body_bytes: 1 << 20,
    };

    /// A protobuf request with spans of these trace ids (raw bytes of any length).
    pub(crate) fn proto(ids: &[&[u8]]) -> Vec<u8> {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: ids
                        .iter()
                        .map(|t| Span {
                            trace_id: t.to_vec(),
                        })
                        .collect(),
                }],
            }],
        };
        prost::Message::encode_to_vec(&req)
    }

    #[test]
    fn protobuf_ids_with_invalid_ones_skipped_and_concatenated_requests_read_to_the_end() {
        let a = [0xab; 16];
        let b = [0x01; 16];
        let mut body = proto(&[&a, &[0u8; 16], &a, &[1, 2, 3]]);
        body.extend(proto(&[&b, &[]]));
        let r = decode_body(&body, Encoding::Protobuf, Compression::None, &L).unwrap();
        assert_eq!(r.trace_ids, vec![a, b]);
        assert_eq!((r.spans, r.invalid_ids), (6, 3));
    }

    #[test]
    fn json_ids_in_any_case_and_snake_case_keys() {
        let body = br#"{"resourceSpans":[{"resource":{},"scopeSpans":[{"scope":{},"spans":[
            {"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","kind":2},
            {"traceId":"5b8efff798038103d269b633813fc60c"},
            {"spanId":"01"},
            {"traceId":""},
            {"traceId":"zz8efff798038103d269b633813fc60c"}]}]},
            {"resource_spans_unknown":1,"scope_spans":[{"spans":[{"trace_id":"00000000000000000000000000000001"}]}]}]}"#;
        let r = decode_body(body, Encoding::Json, Compression::None, &L).unwrap();
        let mut one = [0u8; 16];
        one[15] = 1;
        assert_eq!(
            r.trace_ids,
            vec![
                [
                    0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81,
                    0x3f, 0xc6, 0x0c
                ],
                one
            ]
        );
        assert_eq!((r.spans, r.invalid_ids), (6, 3));
    }

    #[test]
    fn gzip_and_deflate_bodies_and_the_cap_after_decompression() {
        let body = proto(&[&[7; 16]]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&body).unwrap();
        let gz = gz.finish().unwrap();
        let r = decode_body(&gz, Encoding::Protobuf, Compression::Gzip, &L).unwrap();
        assert_eq!(r.trace_ids, vec![[7; 16]]);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&body).unwrap();
        let z = z.finish().unwrap();
        let r = decode_body(&z, Encoding::Protobuf, Compression::Deflate, &L).unwrap();
        assert_eq!(r.trace_ids, vec![[7; 16]]);
        // a small gzip body that inflates past the cap
        let big = vec![b' '; 4096];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&big).unwrap();
        let gz = gz.finish().unwrap();
        let small = Limits {
            max_body_bytes: 1024,
        };
        assert!(gz.len() < 1024);
        assert_eq!(
            decode_body(&gz, Encoding::Json, Compression::Gzip, &small),
            Err(DecodeError::TooLarge { max: 1024 })
        );
        assert!(matches!(
            decode_body(b"not gzip", Encoding::Json, Compression::Gzip, &L),
            Err(DecodeError::Decompress("gzip", _))
        ));
    }

    #[test]
    fn bodies_that_do_not_decode_say_why() {
        let e =
            decode_body(&[0x0a, 0x05, 1], Encoding::Protobuf, Compression::None, &L).unwrap_err();
        assert!(e.to_string().contains("protobuf"), "{e}");
        let e = decode_body(
            b"{\"resourceSpans\":3}",
            Encoding::Json,
            Compression::None,
            &L,
        )
        .unwrap_err();
        assert!(e.to_string().contains("OTLP/JSON"), "{e}");
        // an empty request is a valid one with no spans
        let r = decode_body(b"", Encoding::Protobuf, Compression::None, &L).unwrap();
        assert_eq!(r, Report::default());
        let r = decode_body(b"{}", Encoding::Json, Compression::None, &L).unwrap();
        assert_eq!(r, Report::default());
    }
}
