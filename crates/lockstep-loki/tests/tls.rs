//! TLS against a rustls server on 127.0.0.1 with a CA made in the test.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use lockstep_loki::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

struct Pki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    Pki {
        ca_pem: ca.pem(),
        server: Arc::new(server),
    }
}

/// Accept one TLS connection, read one request, answer 204. Sends the request's
/// header block (or the TLS error text) over the channel.
fn serve_once(cfg: Arc<rustls::ServerConfig>) -> (String, mpsc::Receiver<Result<String, String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let conn = rustls::ServerConnection::new(cfg).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let result = loop {
            match tls.read(&mut chunk) {
                Ok(0) => break Err("eof".to_string()),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        while buf.len() < end + 4 + len {
                            let n = tls.read(&mut chunk).unwrap();
                            assert!(n > 0);
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        let _ =
                            tls.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
                        let _ = tls.flush();
                        tls.conn.send_close_notify();
                        let _ = tls.flush();
                        break Ok(head);
                    }
                }
                Err(e) => break Err(e.to_string()),
            }
        };
        let _ = tx.send(result);
    });
    (format!("https://{addr}/loki/api/v1/push"), rx)
}

fn batch() -> Vec<Stream> {
    let mut labels = BTreeMap::new();
    labels.insert("app".to_string(), "tls".to_string());
    vec![Stream {
        labels,
        entries: vec![Entry::new(1, "over tls")],
    }]
}

#[test]
fn ca_file_lets_the_push_through() {
    let pki = pki();
    let dir = std::env::temp_dir().join(format!("lockstep-loki-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, &pki.ca_pem).unwrap();

    let (url, rx) = serve_once(pki.server.clone());
    let mut cfg = ClientConfig::new(url);
    cfg.timeout = Duration::from_secs(5);
    cfg.tenant = Some("tls-tenant".into());
    cfg.tls.ca_file = Some(ca_path);
    let client = LokiClient::new(cfg).unwrap();
    let o = client.push(&batch()).unwrap();
    assert!(matches!(o, Outcome::Delivered { status: 204 }), "{o:?}");
    let head = rx.recv().unwrap().unwrap();
    assert!(
        head.contains("X-Scope-OrgID: tls-tenant") || head.contains("x-scope-orgid: tls-tenant"),
        "{head}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verification_is_on_by_default() {
    let pki = pki();
    let (url, rx) = serve_once(pki.server.clone());
    let mut cfg = ClientConfig::new(url);
    cfg.timeout = Duration::from_secs(5);
    let client = LokiClient::new(cfg).unwrap();
    let o = client.push(&batch()).unwrap();
    match &o {
        Outcome::Retry(RetryCause::Transport(e)) => {
            assert_eq!(e.kind, TransportKind::Tls, "{e}")
        }
        other => panic!("untrusted certificate accepted: {other:?}"),
    }
    // The server never saw a request.
    assert!(rx.recv().unwrap().is_err());
}
