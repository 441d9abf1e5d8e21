//! The Loki receiver against the real `lockstep_loki::LokiClient`: stored entries,
//! every fault mode's answer and what it stored, label rules, ordering window.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lockstep_hosts::loki_receiver::{LokiReceiver, Mode, ReceiverConfig, StoredEntry};
use lockstep_loki::{
    encode_protobuf_snappy, ClientConfig, Encoding, Entry, LokiClient, Outcome, RetryCause, Stream,
    TransportKind,
};

const T0: i128 = 1_790_000_000_000_000_000;
const HOUR: i128 = 3_600_000_000_000;

fn client(rx: &LokiReceiver, enc: Encoding, tenant: Option<&str>) -> LokiClient {
    let mut cfg = ClientConfig::new(rx.url());
    cfg.encoding = enc;
    cfg.tenant = tenant.map(str::to_string);
    cfg.timeout = Duration::from_secs(3);
    LokiClient::new(cfg).unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn entry(ts: i128, line: &str, sm: &[(&str, &str)]) -> Entry {
    Entry {
        ts_ns: ts,
        line: line.into(),
        structured_metadata: sm
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn stored(e: &Entry) -> StoredEntry {
    StoredEntry {
        ts_ns: e.ts_ns,
        line: e.line.clone(),
        structured_metadata: e.structured_metadata.clone(),
    }
}

fn sample_batch() -> Vec<Stream> {
    vec![
        Stream {
            labels: labels(&[("app", "api"), ("host", "h\"1\\x\ny")]),
            entries: vec![
                entry(T0, "first", &[("trace_id", "abc"), ("span_id", "01")]),
                entry(T0 + 5, "second ünïcode", &[]),
            ],
        },
        Stream {
            labels: labels(&[("app", "db")]),
            entries: vec![entry(T0 + 1, "db line", &[("request_id", "r-9")])],
        },
    ]
}

fn assert_stores_exact(enc: Encoding) {
    let rx = LokiReceiver::start();
    let c = client(&rx, enc, Some("team-a"));
    let batch = sample_batch();
    let out = c.push(&batch).unwrap();
    assert!(matches!(out, Outcome::Delivered { status: 204 }), "{out:?}");
    let got = rx.entries("team-a");
    let want: BTreeMap<_, _> = batch
        .iter()
        .map(|s| {
            (
                s.labels.clone(),
                s.entries.iter().map(stored).collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(rx.total_stored(), 3);
    let st = rx.stats();
    assert_eq!(st.requests, 1);
    assert_eq!(st.by_status.get(&204), Some(&1));
    assert_eq!(st.entries_rejected, 0);
    let reqs = rx.requests();
    assert_eq!(reqs[0].content_type.as_deref(), Some(enc.content_type()));
    assert_eq!(reqs[0].tenant, "team-a");
    assert!(rx.entries("other").is_empty());
}

#[test]
fn accept_protobuf_stores_exact_entries() {
    assert_stores_exact(Encoding::ProtobufSnappy);
}

#[test]
fn accept_json_stores_exact_entries() {
    assert_stores_exact(Encoding::Json);
}

#[test]
fn tenants_are_stored_apart_and_default_is_fake() {
    let rx = LokiReceiver::start();
    let a = client(&rx, Encoding::ProtobufSnappy, Some("a"));
    let none = client(&rx, Encoding::Json, None);
    let s = |line: &str| {
        vec![Stream {
            labels: labels(&[("app", "x")]),
            entries: vec![entry(T0, line, &[])],
        }]
    };
    assert!(matches!(
        a.push(&s("to a")).unwrap(),
        Outcome::Delivered { .. }
    ));
    assert!(matches!(
        none.push(&s("to fake")).unwrap(),
        Outcome::Delivered { .. }
    ));
    assert_eq!(rx.tenants(), vec!["a".to_string(), "fake".to_string()]);
    assert_eq!(rx.entries("a")[&labels(&[("app", "x")])][0].line, "to a");
    assert_eq!(
        rx.entries("fake")[&labels(&[("app", "x")])][0].line,
        "to fake"
    );

    let strict = LokiReceiver::start_with(ReceiverConfig {
        require_tenant: true,
        ..Default::default()
    });
    let none = client(&strict, Encoding::Json, None);
    let out = none.push(&s("x")).unwrap();
    assert!(
        matches!(out, Outcome::Retry(RetryCause::Status { status: 401, .. })),
        "{out:?}"
    );
    assert_eq!(strict.total_stored(), 0);
}

#[test]
fn server_errors_and_429_store_nothing_and_are_retried() {
    let rx = LokiReceiver::start();
    let c = client(&rx, Encoding::ProtobufSnappy, Some("t"));
    let batch = sample_batch();
    for (mode, code) in [
        (Mode::ServerError(500), 500),
        (Mode::ServerError(503), 503),
        (Mode::TooManyRequests, 429),
    ] {
        rx.set_mode(mode);
        let out = c.push(&batch).unwrap();
        match &out {
            Outcome::Retry(RetryCause::Status { status, .. }) => assert_eq!(*status, code),
            other => panic!("{code}: {other:?}"),
        }
    }
    assert_eq!(rx.total_stored(), 0);
    let st = rx.stats();
    assert_eq!(st.entries_discarded, 9);
    assert_eq!(st.by_status, BTreeMap::from([(429, 1), (500, 1), (503, 1)]));
    rx.set_mode(Mode::Accept);
    assert!(matches!(c.push(&batch).unwrap(), Outcome::Delivered { .. }));
    assert_eq!(rx.total_stored(), 3);
}

#[test]
fn blocked_260_discards_and_is_not_delivered() {
    let rx = LokiReceiver::start();
    let c = client(&rx, Encoding::Json, Some("t"));
    rx.set_mode(Mode::Blocked260);
    let out = c.push(&sample_batch()).unwrap();
    assert!(
        matches!(out, Outcome::Blocked { status: 260, .. }),
        "{out:?}"
    );
    assert_eq!(rx.total_stored(), 0);
    assert_eq!(rx.stats().entries_discarded, 3);
    assert!(rx.entries("t").is_empty());
}

#[test]
fn blocked_260_with_bad_labels_answers_400() {
    let rx = LokiReceiver::start();
    let c = client(&rx, Encoding::ProtobufSnappy, Some("t"));
    rx.set_mode(Mode::Blocked260);
    let mut batch = sample_batch();
    batch[1].labels = (0..16)
        .map(|i| (format!("l{i}"), "v".to_string()))
        .collect();
    let out = c.push(&batch).unwrap();
    assert!(
        matches!(out, Outcome::Rejected { status: 400, .. }),
        "{out:?}"
    );
    assert_eq!(rx.total_stored(), 0);
}

#[test]
fn partial_reject_stores_the_rest_with_400() {
    let rx = LokiReceiver::start();
    let c = client(&rx, Encoding::ProtobufSnappy, Some("t"));
    rx.set_mode(Mode::PartialReject { every_nth: 3 });
    let entries: Vec<Entry> = (0..7)
        .map(|i| entry(T0 + i, &format!("l{i}"), &[]))
        .collect();
    let batch = vec![Stream {
        labels: labels(&[("app", "p")]),
        entries: entries.clone(),
    }];
    let out = c.push(&batch).unwrap();
    match &out {
        Outcome::Rejected { status: 400, body } => {
            assert!(body.contains("too far behind"), "{body}");
            assert!(body.contains("total ignored: 2 out of 7"), "{body}");
        }
        other => panic!("{other:?}"),
    }
    let got: Vec<String> = rx.entries("t")[&labels(&[("app", "p")])]
        .iter()
        .map(|e| e.line.clone())
        .collect();
    assert_eq!(got, ["l0", "l1", "l3", "l4", "l6"]);
    let st = rx.stats();
    assert_eq!((st.entries_stored, st.entries_rejected), (5, 2));
}

#[test]
fn ordering_window_rejects_entries_too_far_behind() {
    let rx = LokiReceiver::start();
    let c = client(&rx, Encoding::ProtobufSnappy, Some("t"));
    let l = labels(&[("app", "o")]);
    let s = |entries: Vec<Entry>| {
        vec![Stream {
            labels: l.clone(),
            entries,
        }]
    };
    assert!(matches!(
        c.push(&s(vec![entry(T0, "now", &[])])).unwrap(),
        Outcome::Delivered { .. }
    ));
    // 10 minutes behind: inside the 1 h window.
    let out = c
        .push(&s(vec![entry(T0 - HOUR / 6, "10 min old", &[])]))
        .unwrap();
    assert!(matches!(out, Outcome::Delivered { .. }), "{out:?}");
    // 2 h behind: rejected; sent unsorted, the newest of the same push advances first.
    let out = c
        .push(&s(vec![
            entry(T0 + HOUR, "one hour later", &[]),
            entry(T0 - 2 * HOUR, "two hours old", &[]),
            entry(T0 - HOUR / 2, "half an hour before the first", &[]),
        ]))
        .unwrap();
    assert!(
        matches!(out, Outcome::Rejected { status: 400, .. }),
        "{out:?}"
    );
    let lines: Vec<String> = rx.entries("t")[&l].iter().map(|e| e.line.clone()).collect();
    assert_eq!(lines, ["now", "10 min old", "one hour later"]);
    assert_eq!(rx.stats().entries_rejected, 2);
    // Another stream is not held back by this one's newest entry.
    let out = c
        .push(&[Stream {
            labels: labels(&[("app", "other")]),
            entries: vec![entry(T0 - 2 * HOUR, "old but first", &[])],
        }])
        .unwrap();
    assert!(matches!(out, Outcome::Delivered { .. }), "{out:?}");
}

#[test]
fn exact_duplicates_are_dropped_and_counted() {
    let rx = LokiReceiver::start();
    let c = client(&rx, Encoding::Json, Some("t"));
    rx.set_mode(Mode::StoreThenFail(500));
    let out = c.push(&sample_batch()).unwrap();
    assert!(
        matches!(out, Outcome::Retry(RetryCause::Status { status: 500, .. })),
        "{out:?}"
    );
    assert_eq!(rx.total_stored(), 3);
    rx.set_mode(Mode::Accept);
    assert!(matches!(
        c.push(&sample_batch()).unwrap(),
        Outcome::Delivered { .. }
    ));
    assert_eq!(rx.total_stored(), 3);
    assert_eq!(rx.stats().duplicates_dropped, 3);
    // Same timestamp, different line: not a duplicate.
    let mut b = sample_batch();
    b[0].entries[0].line = "first, changed".into();
    assert!(matches!(c.push(&b).unwrap(), Outcome::Delivered { .. }));
    assert_eq!(rx.total_stored(), 4);
}

#[test]
fn label_rules_reject_the_stream_and_store_the_others() {
    let rx = LokiReceiver::start();
    let c = client(&rx, Encoding::ProtobufSnappy, Some("t"));
    // 16 labels: the client sends them as they are.
    let mut batch = sample_batch();
    batch[1].labels = (0..16)
        .map(|i| (format!("l{i}"), "v".to_string()))
        .collect();
    let out = c.push(&batch).unwrap();
    match &out {
        Outcome::Rejected { status: 400, body } => assert!(body.contains("16 labels"), "{body}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(rx.total_stored(), 2);
    assert_eq!(rx.entries("t").len(), 1);
    // Exactly 15 is fine.
    batch[1].labels = (0..15)
        .map(|i| (format!("l{i}"), "v".to_string()))
        .collect();
    assert!(matches!(
        c.push(&batch[1..]).unwrap(),
        Outcome::Delivered { .. }
    ));
    assert_eq!(rx.total_stored(), 3);

    // Bad names in the text form (the client itself never emits them): hand-built bodies.
    for bad in [r#"{1app="x"}"#, r#"{app.name="x"}"#, r#"{app="x""#, r#"{}"#] {
        use prost::Message;
        let pr = lockstep_loki::PushRequest {
            streams: vec![
                lockstep_loki::StreamAdapter {
                    labels: bad.to_string(),
                    entries: vec![lockstep_loki::EntryAdapter {
                        timestamp: Some(lockstep_loki::Timestamp {
                            seconds: 1_790_000_100,
                            nanos: 0,
                        }),
                        line: "bad".into(),
                        structured_metadata: vec![],
                    }],
                },
                lockstep_loki::StreamAdapter {
                    labels: format!(r#"{{app="good", case="{}"}}"#, bad.len()),
                    entries: vec![lockstep_loki::EntryAdapter {
                        timestamp: Some(lockstep_loki::Timestamp {
                            seconds: 1_790_000_100,
                            nanos: 7,
                        }),
                        line: "good".into(),
                        structured_metadata: vec![],
                    }],
                },
            ],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&pr.encode_to_vec())
            .unwrap();
        let before = rx.total_stored();
        let out = c.push_body(&body);
        assert!(
            matches!(out, Outcome::Rejected { status: 400, .. }),
            "{bad}: {out:?}"
        );
        assert_eq!(rx.total_stored(), before + 1, "{bad}");
    }

    // JSON with a bad label name.
    let j = client(&rx, Encoding::Json, Some("j"));
    let body = br#"{"streams":[{"stream":{"bad-name":"x"},"values":[["1790000000000000000","a"]]},
        {"stream":{"ok":"y"},"values":[["1790000000000000000","b",{"k":"v"}]]}]}"#;
    let out = j.push_body(body);
    assert!(
        matches!(out, Outcome::Rejected { status: 400, .. }),
        "{out:?}"
    );
    let got = rx.entries("j");
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[&labels(&[("ok", "y")])],
        vec![StoredEntry {
            ts_ns: T0,
            line: "b".into(),
            structured_metadata: vec![("k".into(), "v".into())],
        }]
    );
}

#[test]
fn malformed_empty_and_oversized_bodies() {
    let rx = LokiReceiver::start_with(ReceiverConfig {
        max_body_bytes: 4096,
        ..Default::default()
    });
    let c = client(&rx, Encoding::ProtobufSnappy, Some("t"));
    let out = c.push_body(b"definitely not snappy");
    assert!(
        matches!(out, Outcome::Rejected { status: 400, .. }),
        "{out:?}"
    );
    let empty = encode_protobuf_snappy::<lockstep_loki::Stream>(&[]).unwrap();
    let out = c.push_body(&empty);
    assert!(
        matches!(out, Outcome::Rejected { status: 422, .. }),
        "{out:?}"
    );
    let big = vec![Stream {
        labels: labels(&[("app", "big")]),
        entries: (0..100)
            .map(|i| {
                // Incompressible lines, so the snappy body stays above the limit.
                let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let line: String = (0..12)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        format!("{x:016x}")
                    })
                    .collect();
                entry(T0 + i, &line, &[])
            })
            .collect(),
    }];
    let out = c.push(&big).unwrap();
    assert!(
        matches!(out, Outcome::Rejected { status: 413, .. }),
        "{out:?}"
    );
    assert_eq!(rx.total_stored(), 0);
    // Still serving after those.
    assert!(matches!(
        c.push(&sample_batch()).unwrap(),
        Outcome::Delivered { .. }
    ));
}

#[test]
fn black_hole_times_the_client_out_and_counts_the_request() {
    let rx = LokiReceiver::start();
    let mut cfg = ClientConfig::new(rx.url());
    cfg.timeout = Duration::from_millis(300);
    let c = LokiClient::new(cfg).unwrap();
    rx.set_mode(Mode::BlackHole);
    let t = Instant::now();
    let out = c.push(&sample_batch()).unwrap();
    let took = t.elapsed();
    match &out {
        Outcome::Retry(RetryCause::Transport(e)) => assert_eq!(e.kind, TransportKind::Timeout),
        other => panic!("{other:?}"),
    }
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(rx.wait_for_requests(1, Duration::from_secs(1)));
    assert_eq!(rx.requests()[0].status, None);
    assert_eq!(rx.total_stored(), 0);
    rx.set_mode(Mode::Accept);
    let out = c.push(&sample_batch()).unwrap();
    assert!(matches!(out, Outcome::Delivered { .. }), "{out:?}");
    assert!(rx.wait_for(3, Duration::from_secs(1)));
    assert_eq!(rx.stats().unanswered, 1);
}

#[test]
fn slow_answers_delay_and_still_store() {
    let rx = LokiReceiver::start();
    let c = client(&rx, Encoding::ProtobufSnappy, Some("t"));
    rx.set_mode(Mode::Slow(Duration::from_millis(400)));
    let t = Instant::now();
    let out = c.push(&sample_batch()).unwrap();
    assert!(matches!(out, Outcome::Delivered { .. }), "{out:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(rx.total_stored(), 3);

    // Slower than the client's timeout: the client gives up, the receiver stores anyway.
    let mut cfg = ClientConfig::new(rx.url());
    cfg.tenant = Some("late".into());
    cfg.timeout = Duration::from_millis(200);
    let impatient = LokiClient::new(cfg).unwrap();
    let out = impatient.push(&sample_batch()).unwrap();
    assert!(
        matches!(&out, Outcome::Retry(RetryCause::Transport(e)) if e.kind == TransportKind::Timeout),
        "{out:?}"
    );
    assert!(rx.wait_for(6, Duration::from_secs(2)));
    assert_eq!(rx.entries("late").values().map(Vec::len).sum::<usize>(), 3);
}

#[test]
fn refuse_gives_connect_errors_then_recovers() {
    let rx = LokiReceiver::start();
    let c = client(&rx, Encoding::ProtobufSnappy, Some("t"));
    // Warm the client's connection pool first, so Refuse must also close live connections.
    assert!(matches!(
        c.push(&sample_batch()).unwrap(),
        Outcome::Delivered { .. }
    ));
    rx.set_mode(Mode::Refuse);
    for _ in 0..2 {
        let out = c.push(&sample_batch()).unwrap();
        match &out {
            Outcome::Retry(RetryCause::Transport(e)) => {
                assert_eq!(e.kind, TransportKind::Connect, "{e}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(rx.request_count(), 1);
    rx.set_mode(Mode::Accept);
    let mut b = sample_batch();
    b[0].entries[0].line = "after refuse".into();
    assert!(matches!(c.push(&b).unwrap(), Outcome::Delivered { .. }));
    assert_eq!(rx.total_stored(), 4);
}

#[test]
fn request_times_bound_the_rate() {
    let rx = LokiReceiver::start();
    let c = client(&rx, Encoding::ProtobufSnappy, Some("t"));
    rx.set_mode(Mode::ServerError(503));
    let start = Instant::now();
    for _ in 0..4 {
        let _ = c.push(&sample_batch()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let times = rx.request_times();
    assert_eq!(times.len(), 4);
    assert!(times[0] >= start);
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(100),
            "{:?}",
            w[1] - w[0]
        );
    }
    assert!(rx
        .requests()
        .iter()
        .all(|r| r.status == Some(503) && r.entries == 3));
}

#[test]
fn keep_alive_serves_many_requests_on_few_connections() {
    let rx = LokiReceiver::start();
    let c = client(&rx, Encoding::ProtobufSnappy, Some("t"));
    for i in 0..20 {
        let out = c
            .push(&[Stream {
                labels: labels(&[("app", "k")]),
                entries: vec![entry(T0 + i, "x", &[])],
            }])
            .unwrap();
        assert!(matches!(out, Outcome::Delivered { .. }), "{out:?}");
    }
    assert_eq!(rx.total_stored(), 20);
    assert!(rx.stats().connections < 20, "{:?}", rx.stats());
}

#[test]
fn drop_closes_the_port() {
    let rx = LokiReceiver::start();
    let addr = rx.addr();
    rx.set_mode(Mode::BlackHole);
    let url = rx.url();
    let h = std::thread::spawn(move || {
        let mut cfg = ClientConfig::new(url);
        cfg.timeout = Duration::from_secs(3);
        LokiClient::new(cfg).unwrap().push(&sample_batch()).unwrap()
    });
    assert!(rx.wait_for_requests(1, Duration::from_secs(2)));
    let t = Instant::now();
    drop(rx);
    // Dropping ends the black-holed connection (the client sees it closed, not a timeout).
    let out = h.join().unwrap();
    assert!(out.is_retryable(), "{out:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn raw_http_chunked_body_and_unknown_path() {
    use std::io::{Read, Write};
    let rx = LokiReceiver::start();
    let body =
        br#"{"streams":[{"stream":{"app":"raw"},"values":[["1790000000000000000","chunked"]]}]}"#;
    let (a, b) = body.split_at(20);
    let mut req = Vec::new();
    req.extend_from_slice(
        b"POST /loki/api/v1/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          X-Scope-OrgID: raw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for part in [a, b] {
        req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let mut s = std::net::TcpStream::connect(rx.addr()).unwrap();
    s.write_all(&req).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 204 "), "{resp}");
    assert_eq!(
        rx.entries("raw")[&labels(&[("app", "raw")])][0].line,
        "chunked"
    );

    let mut s = std::net::TcpStream::connect(rx.addr()).unwrap();
    s.write_all(b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 404 "), "{resp}");
    assert_eq!(rx.request_count(), 1);
}
