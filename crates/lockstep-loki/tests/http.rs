//! End to end against tiny HTTP servers on 127.0.0.1 (loopback only).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use lockstep_loki::*;
use prost::Message;

const TOKEN: &str = "s3cr3t-t0ken-XYZ";
const PASSWORD: &str = "hunter2-pa55word";

struct Request {
    request_line: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

fn read_request(stream: &mut TcpStream) -> Request {
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    r.read_line(&mut request_line).unwrap();
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').unwrap();
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers
        .get("content-length")
        .map(|v| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    Request {
        request_line: request_line.trim_end().to_string(),
        headers,
        body,
    }
}

/// Serve one request per (status, body) in `answers`, then stop. Each request is
/// sent back over the channel. `{auth}` in a body is replaced by the request's
/// Authorization header (to check the client scrubs echoed credentials).
fn serve(answers: Vec<(u16, &'static str)>) -> (String, mpsc::Receiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for (status, body) in answers {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let req = read_request(&mut s);
            let auth = req
                .headers
                .get("authorization")
                .cloned()
                .unwrap_or_default();
            let body = body.replace("{auth}", &auth);
            let resp = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(resp.as_bytes()).unwrap();
            tx.send(req).unwrap();
        }
    });
    (format!("http://{addr}/loki/api/v1/push"), rx)
}

fn batch() -> Vec<Stream> {
    let mut labels = BTreeMap::new();
    labels.insert("app".to_string(), "api".to_string());
    labels.insert("host".to_string(), "h1".to_string());
    group_entries(vec![
        (
            labels.clone(),
            Entry {
                ts_ns: 2_000,
                line: "second".into(),
                structured_metadata: vec![("trace_id".into(), "t1".into())],
            },
        ),
        (labels, Entry::new(1_000, "first")),
    ])
}

#[test]
fn push_protobuf_then_classify_204_400_429() {
    let (url, rx) = serve(vec![
        (204, ""),
        (400, "entry too far behind; auth was {auth}"),
        (429, "Ingestion rate limit exceeded"),
    ]);
    let mut cfg = ClientConfig::new(url);
    cfg.tenant = Some("team-a".into());
    cfg.auth = Auth::Bearer(Secret::new(TOKEN));
    let client = LokiClient::new(cfg).unwrap();

    let o = client.push(&batch()).unwrap();
    assert!(matches!(o, Outcome::Delivered { status: 204 }), "{o:?}");
    let req = rx.recv().unwrap();
    assert_eq!(req.request_line, "POST /loki/api/v1/push HTTP/1.1");
    assert_eq!(req.headers["x-scope-orgid"], "team-a");
    assert_eq!(req.headers["content-type"], "application/x-protobuf");
    assert_eq!(req.headers["authorization"], format!("Bearer {TOKEN}"));
    let raw = snap::raw::Decoder::new().decompress_vec(&req.body).unwrap();
    let pr = PushRequest::decode(raw.as_slice()).unwrap();
    assert_eq!(pr.streams.len(), 1);
    assert_eq!(pr.streams[0].labels, r#"{app="api", host="h1"}"#);
    let lines: Vec<_> = pr.streams[0]
        .entries
        .iter()
        .map(|e| e.line.as_str())
        .collect();
    assert_eq!(lines, vec!["first", "second"]);
    assert_eq!(pr.streams[0].entries[1].structured_metadata[0].value, "t1");

    let o = client.push(&batch()).unwrap();
    match &o {
        Outcome::Rejected { status: 400, body } => {
            assert!(body.starts_with("entry too far behind"), "{body}");
            // The server echoed the Authorization header; the client scrubs it.
            assert!(!body.contains(TOKEN), "{body}");
            assert!(body.contains("<redacted>"), "{body}");
        }
        other => panic!("want Rejected 400, got {other:?}"),
    }
    assert!(!o.is_retryable());
    rx.recv().unwrap();

    let o = client.push(&batch()).unwrap();
    match &o {
        Outcome::Retry(RetryCause::Status { status: 429, body }) => {
            assert_eq!(body, "Ingestion rate limit exceeded")
        }
        other => panic!("want Retry 429, got {other:?}"),
    }
    rx.recv().unwrap();
}

#[test]
fn push_json_with_basic_auth_and_260() {
    let (url, rx) = serve(vec![(260, "ingestion blocked"), (503, "ingester down")]);
    let mut cfg = ClientConfig::new(url);
    cfg.encoding = Encoding::Json;
    cfg.auth = Auth::Basic {
        user: "loki-user".into(),
        password: Secret::new(PASSWORD),
    };
    let client = LokiClient::new(cfg).unwrap();
    let o = client.push(&batch()).unwrap();
    assert!(matches!(o, Outcome::Blocked { status: 260, .. }), "{o:?}");
    assert!(!o.is_retryable());
    let req = rx.recv().unwrap();
    assert_eq!(req.headers["content-type"], "application/json");
    assert!(!req.headers.contains_key("x-scope-orgid"));
    // base64("loki-user:hunter2-pa55word")
    assert_eq!(
        req.headers["authorization"],
        "Basic bG9raS11c2VyOmh1bnRlcjItcGE1NXdvcmQ="
    );
    let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(v["streams"][0]["stream"]["app"], "api");
    assert_eq!(v["streams"][0]["values"][0][0], "1000");
    assert_eq!(v["streams"][0]["values"][1][2]["trace_id"], "t1");

    let o = client.push(&batch()).unwrap();
    assert!(
        matches!(o, Outcome::Retry(RetryCause::Status { status: 503, .. })),
        "{o:?}"
    );
    rx.recv().unwrap();
}

#[test]
fn silent_server_times_out_as_retryable() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        // Hold the connection open, never answer, until the test is done.
        let _ = done_rx.recv_timeout(Duration::from_secs(10));
        drop(s);
    });
    let mut cfg = ClientConfig::new(format!("http://{addr}/loki/api/v1/push"));
    cfg.timeout = Duration::from_millis(300);
    cfg.auth = Auth::Bearer(Secret::new(TOKEN));
    let client = LokiClient::new(cfg).unwrap();
    let start = Instant::now();
    let o = client.push(&batch()).unwrap();
    let took = start.elapsed();
    done_tx.send(()).unwrap();
    server.join().unwrap();
    match &o {
        Outcome::Retry(RetryCause::Transport(e)) => {
            assert_eq!(e.kind, TransportKind::Timeout, "{e}");
            let msg = e.to_string();
            assert!(msg.contains(&addr.to_string()), "{msg}");
            assert!(!msg.contains(TOKEN), "{msg}");
        }
        other => panic!("want transport timeout, got {other:?}"),
    }
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn refused_connection_is_retryable_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut cfg = ClientConfig::new(format!("http://{addr}/loki/api/v1/push"));
    cfg.timeout = Duration::from_secs(2);
    let client = LokiClient::new(cfg).unwrap();
    let o = client.push(&batch()).unwrap();
    match &o {
        Outcome::Retry(RetryCause::Transport(e)) => {
            assert_eq!(e.kind, TransportKind::Connect, "{e}")
        }
        other => panic!("want connect error, got {other:?}"),
    }
    assert!(o.is_endpoint_failure());
}

#[test]
fn https_against_plain_server_is_retryable_not_delivered() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n");
    });
    let mut cfg = ClientConfig::new(format!("https://{addr}/loki/api/v1/push"));
    cfg.timeout = Duration::from_secs(2);
    let client = LokiClient::new(cfg).unwrap();
    let o = client.push(&batch()).unwrap();
    assert!(o.is_retryable(), "{o:?}");
    assert!(
        matches!(o, Outcome::Retry(RetryCause::Transport(_))),
        "{o:?}"
    );
    server.join().unwrap();
}

#[test]
fn empty_batch_is_refused_locally() {
    let client = LokiClient::new(ClientConfig::new("http://127.0.0.1:9/x")).unwrap();
    assert!(matches!(client.push(&[]), Err(LokiError::EmptyBatch)));
    let empty = vec![Stream::default()];
    assert!(matches!(client.push(&empty), Err(LokiError::EmptyBatch)));
}
