//! The HTTP shell: one blocking `POST /loki/api/v1/push` per call, via `ureq` + rustls (ring).

use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;

use crate::classify::{Outcome, RetryCause};
use crate::encode::{encode_json, encode_protobuf_snappy_with, EncodeScratch};
use crate::model::{Stream, StreamView};
use crate::{LokiError, TransportError, TransportKind};

/// Bytes of a response body read at most.
pub const MAX_BODY_READ: u64 = 64 * 1024;
/// Characters of a response body kept for logging.
pub const MAX_BODY_CHARS: usize = 1024;

/// A secret string (password, token). Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for building the header. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

/// Authentication sent in the `Authorization` header.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// No `Authorization` header.
    #[default]
    None,
    /// HTTP basic auth.
    Basic {
        /// User name (not secret, shown in Debug).
        user: String,
        /// Password (redacted).
        password: Secret,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

impl Auth {
    fn header_value(&self) -> Option<String> {
        match self {
            Auth::None => None,
            Auth::Basic { user, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{user}:{}", password.expose()))
            )),
            Auth::Bearer(t) => Some(format!("Bearer {}", t.expose())),
        }
    }

    /// Strings that must never appear in output (raw secrets and encoded header).
    fn secrets(&self) -> Vec<String> {
        let mut v = Vec::new();
        match self {
            Auth::None => {}
            Auth::Basic { password, .. } => {
                if !password.expose().is_empty() {
                    v.push(password.expose().to_string());
                }
            }
            Auth::Bearer(t) => {
                if !t.expose().is_empty() {
                    v.push(t.expose().to_string());
                }
            }
        }
        if let Some(h) = self.header_value() {
            v.push(h);
        }
        v
    }
}

/// Body encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// `application/x-protobuf`, raw (block) snappy. The default.
    #[default]
    ProtobufSnappy,
    /// `application/json`, uncompressed.
    Json,
}

impl Encoding {
    /// The `Content-Type` header value.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::ProtobufSnappy => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// TLS settings (used for `https://` URLs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsOptions {
    /// PEM file of CA certificates to trust instead of the bundled Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// Turn certificate verification off. Default false; only for tests.
    pub insecure_skip_verify: bool,
}

/// Client configuration.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Full push URL, e.g. `http://loki:3100/loki/api/v1/push`. Must be http or https
    /// and must not carry credentials (use [`Auth`]).
    pub url: String,
    /// `X-Scope-OrgID` value, if any.
    pub tenant: Option<String>,
    /// Authorization.
    pub auth: Auth,
    /// Body encoding.
    pub encoding: Encoding,
    /// Whole-request timeout (connect, send, response). Default 10 s.
    pub timeout: Duration,
    /// TLS settings.
    pub tls: TlsOptions,
}

impl ClientConfig {
    /// Config with defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tenant: None,
            auth: Auth::None,
            encoding: Encoding::default(),
            timeout: Duration::from_secs(10),
            tls: TlsOptions::default(),
        }
    }
}

/// A Loki push client. Cheap to share by reference; holds a connection pool.
pub struct LokiClient {
    cfg: ClientConfig,
    agent: ureq::Agent,
    auth_header: Option<String>,
    secrets: Vec<String>,
}

impl fmt::Debug for LokiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LokiClient")
            .field("cfg", &self.cfg)
            .finish()
    }
}

/// Validate the URL: scheme http/https, a host, no userinfo. The error text never
/// contains the userinfo part.
fn check_url(url: &str) -> Result<(), LokiError> {
    let (scheme, rest) = match url.split_once("://") {
        Some(x) => x,
        None => {
            return Err(LokiError::BadUrl {
                url: redact_userinfo(url),
                reason: "missing scheme (want http:// or https://)",
            })
        }
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(LokiError::BadUrl {
            url: redact_userinfo(url),
            reason: "scheme must be http or https",
        });
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(LokiError::BadUrl {
            url: redact_userinfo(url),
            reason: "credentials in the URL are not allowed; use basic auth or a bearer token",
        });
    }
    if authority.is_empty() {
        return Err(LokiError::BadUrl {
            url: redact_userinfo(url),
            reason: "missing host",
        });
    }
    Ok(())
}

/// Checks an `X-Scope-OrgID` value: not empty, no control characters.
pub fn check_tenant(t: &str) -> Result<(), LokiError> {
    if t.is_empty() || t.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(LokiError::BadTenant {
            tenant: t.to_string(),
        });
    }
    Ok(())
}

/// Replace a `user:pass@` part of a URL's authority with `<redacted>@`.
pub fn redact_userinfo(url: &str) -> String {
    let (prefix, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rfind('@') {
        Some(at) => format!("{prefix}<redacted>@{}{tail}", &authority[at + 1..]),
        None => url.to_string(),
    }
}

fn load_ca(path: &PathBuf) -> Result<Vec<ureq::tls::Certificate<'static>>, LokiError> {
    let pem = std::fs::read(path).map_err(|e| LokiError::CaFile {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(LokiError::CaFile {
                    path: path.clone(),
                    detail: e.to_string(),
                })
            }
        }
    }
    if certs.is_empty() {
        return Err(LokiError::CaFile {
            path: path.clone(),
            detail: "no PEM certificate found".into(),
        });
    }
    Ok(certs)
}

impl LokiClient {
    /// Build a client; checks the URL and loads the CA file.
    pub fn new(cfg: ClientConfig) -> Result<Self, LokiError> {
        check_url(&cfg.url)?;
        if let Some(t) = &cfg.tenant {
            check_tenant(t)?;
        }
        let auth_header = cfg.auth.header_value();
        if let Some(h) = &auth_header {
            if h.bytes().any(|b| b < 0x20 || b == 0x7f) {
                return Err(LokiError::BadCredentials);
            }
        }
        let mut tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .disable_verification(cfg.tls.insecure_skip_verify);
        if let Some(path) = &cfg.tls.ca_file {
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&load_ca(path)?));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_global(Some(cfg.timeout))
            .proxy(None)
            .user_agent(concat!("lockstep-loki/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build()
            .into();
        let secrets = cfg.auth.secrets();
        Ok(Self {
            cfg,
            agent,
            auth_header,
            secrets,
        })
    }

    /// The configuration (credentials redacted in its Debug form).
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// Remove any credential text from `s`.
    fn scrub(&self, s: String) -> String {
        let mut s = s;
        for secret in &self.secrets {
            if s.contains(secret.as_str()) {
                s = s.replace(secret.as_str(), "<redacted>");
            }
        }
        s
    }

    /// Encode `streams` with the configured encoding.
    pub fn encode<S: StreamView>(&self, streams: &[S]) -> Result<Vec<u8>, LokiError> {
        self.encode_with(streams, &mut EncodeScratch::default())
    }

    /// [`LokiClient::encode`] with buffers kept in `scratch` from body to body: the same
    /// bytes.
    pub fn encode_with<S: StreamView>(
        &self,
        streams: &[S],
        scratch: &mut EncodeScratch,
    ) -> Result<Vec<u8>, LokiError> {
        match self.cfg.encoding {
            Encoding::ProtobufSnappy => encode_protobuf_snappy_with(streams, scratch),
            Encoding::Json => Ok(encode_json(streams)),
        }
    }

    /// Push one batch. `Err` only for local problems (empty batch, encoding);
    /// every network result, including failures, is an [`Outcome`].
    pub fn push(&self, streams: &[Stream]) -> Result<Outcome, LokiError> {
        if streams.iter().all(|s| s.entries.is_empty()) {
            return Err(LokiError::EmptyBatch);
        }
        let body = self.encode(streams)?;
        Ok(self.push_body(&body))
    }

    /// Send an already encoded body (in the configured encoding).
    pub fn push_body(&self, body: &[u8]) -> Outcome {
        self.push_body_as(self.cfg.tenant.as_deref(), body, None)
    }

    /// Send an already encoded body for `tenant` (`None`: no `X-Scope-OrgID`), with a
    /// whole-request timeout of `timeout` instead of the configured one when given.
    /// (The drain never shortens it, during a shutdown either: a push cut short may
    /// still be stored by Loki.) Check tenants taken from records
    /// with [`check_tenant`] first: a header with control characters cannot be sent.
    pub fn push_body_as(
        &self,
        tenant: Option<&str>,
        body: &[u8],
        timeout: Option<Duration>,
    ) -> Outcome {
        let mut req = self
            .agent
            .post(&self.cfg.url)
            .header("Content-Type", self.cfg.encoding.content_type());
        if let Some(t) = timeout {
            req = req
                .config()
                .timeout_global(Some(t.min(self.cfg.timeout)))
                .build();
        }
        if let Some(t) = tenant {
            req = req.header("X-Scope-OrgID", t);
        }
        if let Some(a) = &self.auth_header {
            req = req.header("Authorization", a);
        }
        match req.send(body) {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let mut buf = Vec::new();
                // A body that cannot be read does not change the status's meaning.
                let _ = resp
                    .body_mut()
                    .as_reader()
                    .take(MAX_BODY_READ)
                    .read_to_end(&mut buf);
                let text = self.scrub(truncate_body(&buf));
                Outcome::from_status(status, text)
            }
            Err(e) => Outcome::Retry(RetryCause::Transport(self.transport_error(e))),
        }
    }

    fn transport_error(&self, e: ureq::Error) -> TransportError {
        let kind = match &e {
            ureq::Error::Timeout(_) => TransportKind::Timeout,
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => TransportKind::Connect,
            ureq::Error::Io(io) if is_tls_io(io) => TransportKind::Tls,
            ureq::Error::Io(io) if is_connect_io(io) => TransportKind::Connect,
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                TransportKind::Timeout
            }
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => {
                TransportKind::Tls
            }
            _ => TransportKind::Other,
        };
        TransportError {
            url: redact_userinfo(&self.cfg.url),
            kind,
            detail: self.scrub(e.to_string()),
        }
    }
}

fn is_tls_io(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

fn is_connect_io(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | AddrNotAvailable
    )
}

/// Lossy UTF-8 of `buf`, cut to [`MAX_BODY_CHARS`] characters (with a marker).
pub fn truncate_body(buf: &[u8]) -> String {
    let s = String::from_utf8_lossy(buf);
    let s = s.trim_end();
    match s.char_indices().nth(MAX_BODY_CHARS) {
        Some((i, _)) => format!("{}… (truncated)", &s[..i]),
        None => s.to_string(),
    }
}
