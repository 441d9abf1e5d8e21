//! Configuration checks and credential redaction.

use std::time::Duration;

use lockstep_loki::*;

const TOKEN: &str = "s3cr3t-t0ken-XYZ";
const PASSWORD: &str = "hunter2-pa55word";

#[test]
fn debug_never_shows_credentials() {
    for auth in [
        Auth::Bearer(Secret::new(TOKEN)),
        Auth::Basic {
            user: "u".into(),
            password: Secret::new(PASSWORD),
        },
    ] {
        let mut cfg = ClientConfig::new("http://127.0.0.1:3100/loki/api/v1/push");
        cfg.auth = auth.clone();
        cfg.tenant = Some("t".into());
        let client = LokiClient::new(cfg.clone()).unwrap();
        for text in [
            format!("{auth:?}"),
            format!("{auth:#?}"),
            format!("{cfg:?}"),
            format!("{client:?}"),
            format!("{:?}", client.config()),
        ] {
            assert!(!text.contains(TOKEN), "{text}");
            assert!(!text.contains(PASSWORD), "{text}");
            assert!(text.contains("redacted"), "{text}");
        }
    }
    let s = Secret::new(TOKEN);
    assert!(!format!("{s}").contains(TOKEN));
    assert!(!format!("{s:?}").contains(TOKEN));
    assert_eq!(s.expose(), TOKEN);
}

#[test]
fn url_with_credentials_is_refused_without_echoing_them() {
    let url = format!("https://admin:{PASSWORD}@loki.example:3100/loki/api/v1/push");
    let err = LokiClient::new(ClientConfig::new(url)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LokiError::BadUrl { .. }));
    assert!(!msg.contains(PASSWORD), "{msg}");
    assert!(!msg.contains("admin"), "{msg}");
    assert!(msg.contains("loki.example:3100"), "{msg}");
    assert!(!format!("{err:?}").contains(PASSWORD));
}

#[test]
fn bad_urls_named_in_errors() {
    for (url, want) in [
        ("loki:3100/push", "missing scheme"),
        ("ftp://loki/push", "http or https"),
        ("http:///push", "missing host"),
    ] {
        let err = LokiClient::new(ClientConfig::new(url)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(url), "{msg}");
        assert!(msg.contains(want), "{msg}");
    }
}

#[test]
fn redact_userinfo_cases() {
    assert_eq!(
        redact_userinfo("http://u:p@h:1/a@b"),
        "http://<redacted>@h:1/a@b"
    );
    assert_eq!(redact_userinfo("http://h/a@b"), "http://h/a@b");
}

#[test]
fn bad_tenant_and_credentials() {
    let mut cfg = ClientConfig::new("http://127.0.0.1:3100/x");
    cfg.tenant = Some("a\nb".into());
    assert!(matches!(
        LokiClient::new(cfg).unwrap_err(),
        LokiError::BadTenant { .. }
    ));
    let mut cfg = ClientConfig::new("http://127.0.0.1:3100/x");
    cfg.auth = Auth::Bearer(Secret::new(format!("{TOKEN}\r\nX-Evil: 1")));
    let err = LokiClient::new(cfg).unwrap_err();
    assert!(matches!(err, LokiError::BadCredentials));
    assert!(!err.to_string().contains(TOKEN));
}

#[test]
fn ca_file_errors_name_the_path() {
    let dir = std::env::temp_dir().join(format!("lockstep-loki-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.pem");
    let mut cfg = ClientConfig::new("https://127.0.0.1:3100/x");
    cfg.tls.ca_file = Some(missing.clone());
    let msg = LokiClient::new(cfg.clone()).unwrap_err().to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");

    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    cfg.tls.ca_file = Some(empty.clone());
    let msg = LokiClient::new(cfg).unwrap_err().to_string();
    assert!(msg.contains(&empty.display().to_string()), "{msg}");
    assert!(msg.contains("no PEM certificate"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn defaults() {
    let cfg = ClientConfig::new("http://127.0.0.1:3100/loki/api/v1/push");
    assert_eq!(cfg.encoding, Encoding::ProtobufSnappy);
    assert_eq!(cfg.timeout, Duration::from_secs(10));
    assert!(!cfg.tls.insecure_skip_verify);
    assert_eq!(Encoding::Json.content_type(), "application/json");
}
