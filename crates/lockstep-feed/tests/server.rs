//! The receiver over real sockets: what each kind of request is answered, keep-alive,
//! chunked bodies, `Expect: 100-continue`, the caps, a sink that cannot take the ids.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockstep_feed::*;

/// A protobuf ExportTraceServiceRequest with one span per id (hand-written, so the
/// test does not share the decoder's message definitions).
fn proto(ids: &[[u8; 16]]) -> Vec<u8> {
    fn ld(tag: u8, inner: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        let mut n = inner.len();
        while n >= 0x80 {
            v.push((n as u8) | 0x80);
            n >>= 7;
        }
        v.push(n as u8);
        v.extend_from_slice(inner);
        v
    }
    let mut spans = Vec::new();
    for id in ids {
        // trace_id (1), span_id (2), name (5)
        let mut span = ld(0x0a, id);
        span.extend(ld(0x12, &[1; 8]));
        span.extend(ld(0x2a, b"GET /"));
        spans.extend(ld(0x12, &span));
    }
    let scope = ld(0x12, &spans);
    ld(0x0a, &scope)
}

struct Rig {
    server: FeedServer,
    got: Arc<Mutex<Vec<[u8; 16]>>>,
    fail: Arc<Mutex<bool>>,
    metrics: Arc<FeedMetrics>,
}

fn rig(cfg: FeedConfig) -> Rig {
    let got = Arc::new(Mutex::new(Vec::new()));
    let fail = Arc::new(Mutex::new(false));
    let metrics = Arc::new(FeedMetrics::default());
    let (g, f) = (got.clone(), fail.clone());
    let server = FeedServer::start(
        "127.0.0.1:0".parse().unwrap(),
        "feed".into(),
        cfg,
        metrics.clone(),
        Arc::new(move |r: &Report| {
            if *f.lock().unwrap() {
                return Err(SinkError("waiting queue full".into()));
            }
            g.lock().unwrap().extend_from_slice(&r.trace_ids);
            Ok(())
        }),
    )
    .unwrap();
    Rig {
        server,
        got,
        fail,
        metrics,
    }
}

/// Reads one response: (status, headers, body).
fn read_response(c: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut b).unwrap();
        buf.push(b[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status: u16 = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).unwrap();
    (status, head, body)
}

fn post(c: &mut TcpStream, path: &str, headers: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    write!(
        c,
        "POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    c.write_all(body).unwrap();
    read_response(c)
}

fn connect(r: &Rig) -> TcpStream {
    let c = TcpStream::connect(r.server.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

const PB: &str = "Content-Type: application/x-protobuf\r\n";

#[test]
fn kept_ids_are_handed_on_and_answered_200_on_a_kept_alive_connection() {
    let r = rig(FeedConfig::default());
    let mut c = connect(&r);
    let (s, h, body) = post(&mut c, "/v1/traces", PB, &proto(&[[1; 16], [2; 16]]));
    assert_eq!(s, 200, "{h}");
    assert!(
        body.is_empty() && h.contains("application/x-protobuf"),
        "{h}"
    );
    // the same connection, JSON this time, with a charset parameter
    let json = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"03030303030303030303030303030303"}]}]}]}"#;
    let (s, h, body) = post(
        &mut c,
        "/v1/traces",
        "Content-Type: application/json; charset=utf-8\r\n",
        json,
    );
    assert_eq!((s, body.as_slice()), (200, &b"{}"[..]), "{h}");
    assert_eq!(*r.got.lock().unwrap(), vec![[1; 16], [2; 16], [3; 16]]);
    assert_eq!(r.metrics.requests(), vec![(200, 2)]);
    assert_eq!(
        r.metrics.spans.load(std::sync::atomic::Ordering::Relaxed),
        3
    );
}

#[test]
fn chunked_bodies_and_expect_continue() {
    let r = rig(FeedConfig::default());
    let mut c = connect(&r);
    let body = proto(&[[9; 16]]);
    let (a, b) = body.split_at(10);
    write!(
        c,
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\n{PB}Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
    )
    .unwrap();
    // the interim answer comes before the body is sent
    let mut interim = [0u8; 25];
    c.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    write!(c, "{:x}\r\n", a.len()).unwrap();
    c.write_all(a).unwrap();
    write!(c, "\r\n{:x};ext=1\r\n", b.len()).unwrap();
    c.write_all(b).unwrap();
    c.write_all(b"\r\n0\r\n\r\n").unwrap();
    let (s, h, _) = read_response(&mut c);
    assert_eq!(s, 200, "{h}");
    assert_eq!(*r.got.lock().unwrap(), vec![[9; 16]]);
}

#[test]
fn what_is_refused_and_how() {
    let cfg = FeedConfig {
        bearer_token: Some("s3cret".into()),
        limits: Limits {
            max_body_bytes: 4096,
        },
        ..FeedConfig::default()
    };
    let r = rig(cfg);
    let ok_auth = "Authorization: Bearer s3cret\r\n";
    let body = proto(&[[5; 16]]);
    let cases: Vec<(&str, String, Vec<u8>, u16)> = vec![
        ("/v1/traces", PB.to_string(), body.clone(), 401),
        (
            "/v1/traces",
            format!("{PB}Authorization: Bearer nope\r\n"),
            body.clone(),
            401,
        ),
        ("/v1/logs", format!("{PB}{ok_auth}"), body.clone(), 404),
        (
            "/v1/traces",
            format!("Content-Type: text/plain\r\n{ok_auth}"),
            body.clone(),
            415,
        ),
        (
            "/v1/traces",
            format!("{PB}Content-Encoding: zstd\r\n{ok_auth}"),
            body.clone(),
            400,
        ),
        (
            "/v1/traces",
            format!("{PB}{ok_auth}"),
            vec![0x0a, 0x7f, 1],
            400,
        ),
        ("/v1/traces", format!("{PB}{ok_auth}"), vec![0; 5000], 413),
    ];
    for (path, headers, body, want) in cases {
        let mut c = connect(&r);
        let (s, h, b) = post(&mut c, path, &headers, &body);
        assert_eq!(s, want, "{path} {headers:?}: {h}");
        assert!(h.len() + b.len() < 4096);
        if want == 400 {
            // a google.rpc.Status naming why, in the request's encoding
            assert!(
                String::from_utf8_lossy(&b).contains("protobuf")
                    || String::from_utf8_lossy(&b).contains("Content-Encoding"),
                "{b:?}"
            );
        }
    }
    let mut c = connect(&r);
    write!(c, "GET /v1/traces HTTP/1.1\r\nHost: x\r\n{ok_auth}\r\n").unwrap();
    assert_eq!(read_response(&mut c).0, 405);
    // the sink cannot take the ids now: 503, retried by every sender
    *r.fail.lock().unwrap() = true;
    let mut c = connect(&r);
    let (s, h, _) = post(&mut c, "/v1/traces", &format!("{PB}{ok_auth}"), &body);
    assert_eq!(s, 503);
    assert!(h.contains("Retry-After: 1"), "{h}");
    assert!(r.got.lock().unwrap().is_empty());
    *r.fail.lock().unwrap() = false;
    let (s, _, _) = post(&mut c, "/v1/traces", &format!("{PB}{ok_auth}"), &body);
    assert_eq!(s, 200);
    assert_eq!(*r.got.lock().unwrap(), vec![[5; 16]]);
}

#[test]
fn a_stop_ends_idle_connections_and_joins_every_thread() {
    let mut r = rig(FeedConfig::default());
    let mut c = connect(&r);
    assert_eq!(post(&mut c, "/v1/traces", PB, &proto(&[[1; 16]])).0, 200);
    // an idle keep-alive connection and a client that never finishes its head
    let mut slow = connect(&r);
    slow.write_all(b"POST /v1/traces HTTP/1.1\r\nHost").unwrap();
    let t = std::time::Instant::now();
    r.server.stop();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let mut b = [0u8; 1];
    assert_eq!(c.read(&mut b).unwrap_or(0), 0, "closed");
}

#[test]
fn garbage_on_the_wire_is_a_400_and_a_closed_connection() {
    let r = rig(FeedConfig::default());
    let mut c = connect(&r);
    c.write_all(b"\x00\x01\x02 not http\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c).0, 400);
    let mut c = connect(&r);
    c.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut c).0, 411);
}
