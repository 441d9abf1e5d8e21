//! A minimal HTTP/1.1 server side for the emulated endpoints (the Loki-compatible
//! receiver, the `opentelemetry` input): one request at a time from a socket with a
//! short read timeout, `Content-Length` or chunked bodies up to a limit, keep-alive.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A parsed HTTP request.
pub(crate) struct HttpRequest {
    pub method: String,
    pub path: String,
    /// An HTTP/1.0 request (its connection closes unless it asks to keep it alive).
    pub http10: bool,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

enum ReadOutcome {
    Request(HttpRequest),
    /// Protocol error: answer this status and close.
    Bad(u16, String),
    /// EOF, stop or shutdown.
    Closed,
}

/// Reads from a socket with a short read timeout, giving up when `stop` is set.
struct Conn<'a> {
    stop: &'a AtomicBool,
    stream: TcpStream,
    buf: Vec<u8>,
    /// Larger bodies are answered 413.
    max_body: usize,
}

impl Conn<'_> {
    /// Read more bytes into `buf`; false on EOF, error or stop.
    fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 16 * 1024];
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return false;
            }
            match self.stream.read(&mut tmp) {
                Ok(0) => return false,
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return true;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return false,
            }
        }
    }

    /// Take exactly `n` bytes (reading more as needed).
    fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill() {
                return None;
            }
        }
        let rest = self.buf.split_off(n);
        Some(std::mem::replace(&mut self.buf, rest))
    }

    /// Take one CRLF-terminated line (without the CRLF).
    fn line(&mut self, max: usize) -> Option<Vec<u8>> {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let mut l = self.take(p + 2)?;
                l.truncate(p);
                return Some(l);
            }
            if self.buf.len() > max || !self.fill() {
                return None;
            }
        }
    }

    fn read_request(&mut self) -> ReadOutcome {
        const MAX_HEAD: usize = 64 * 1024;
        let head_end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            if self.buf.len() > MAX_HEAD {
                return ReadOutcome::Bad(431, "request head too large".into());
            }
            if !self.fill() {
                return ReadOutcome::Closed;
            }
        };
        let Some(head) = self.take(head_end + 4) else {
            return ReadOutcome::Closed;
        };
        let head = String::from_utf8_lossy(&head[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or("");
        let mut parts = request_line.split(' ');
        let (Some(method), Some(target), Some(version)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return ReadOutcome::Bad(400, format!("bad request line {request_line:?}"));
        };
        if !version.starts_with("HTTP/1.") {
            return ReadOutcome::Bad(505, format!("unsupported version {version:?}"));
        }
        let mut headers = Vec::new();
        for l in lines {
            match l.split_once(':') {
                Some((k, v)) => headers.push((k.trim().to_string(), v.trim().to_string())),
                None => return ReadOutcome::Bad(400, format!("bad header line {l:?}")),
            }
        }
        let mut req = HttpRequest {
            method: method.to_string(),
            path: target.split('?').next().unwrap_or("").to_string(),
            http10: version == "HTTP/1.0",
            headers,
            body: Vec::new(),
        };
        if req
            .header("Expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            let _ = self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let max = self.max_body;
        let chunked = req
            .header("Transfer-Encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            loop {
                let Some(size_line) = self.line(1024) else {
                    return ReadOutcome::Closed;
                };
                let size_text = String::from_utf8_lossy(&size_line);
                let size_hex = size_text.split(';').next().unwrap_or("").trim();
                let Ok(size) = usize::from_str_radix(size_hex, 16) else {
                    return ReadOutcome::Bad(400, format!("bad chunk size {size_hex:?}"));
                };
                if req.body.len().saturating_add(size) > max {
                    return ReadOutcome::Bad(413, format!("body larger than {max} bytes"));
                }
                if size == 0 {
                    // Trailers up to the empty line.
                    loop {
                        match self.line(MAX_HEAD) {
                            Some(l) if l.is_empty() => break,
                            Some(_) => {}
                            None => return ReadOutcome::Closed,
                        }
                    }
                    break;
                }
                let Some(chunk) = self.take(size + 2) else {
                    return ReadOutcome::Closed;
                };
                req.body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(cl) = req.header("Content-Length") {
            let Ok(n) = cl.parse::<usize>() else {
                return ReadOutcome::Bad(400, format!("bad Content-Length {cl:?}"));
            };
            if n > max {
                return ReadOutcome::Bad(413, format!("body of {n} bytes larger than {max}"));
            }
            let Some(body) = self.take(n) else {
                return ReadOutcome::Closed;
            };
            req.body = body;
        }
        ReadOutcome::Request(req)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// Writes a response: `Content-Length` always but for 204, a text type when there is a
/// body.
fn write_response(
    stream: &mut TcpStream,
    status: u16,
    body: &str,
    close: bool,
) -> io::Result<()> {
    let conn = if close { "close" } else { "keep-alive" };
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nConnection: {conn}\r\n",
        reason(status)
    );
    if status != 204 {
        if !body.is_empty() {
            out.push_str("Content-Type: text/plain; charset=utf-8\r\n");
        }
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    if status != 204 {
        out.push_str(body);
    }
    stream.write_all(out.as_bytes())?;
    stream.flush()
}

/// Serves one connection until it closes, `stop` is set, or `handle` answers `None`
/// (drop the connection without an answer, as a black hole): requests in turn,
/// keep-alive unless the request says `Connection: close` (or is HTTP/1.0 without
/// `keep-alive`).
pub(crate) fn serve_connection(
    stop: &AtomicBool,
    stream: TcpStream,
    max_body: usize,
    poll: Duration,
    mut handle: impl FnMut(&HttpRequest) -> Option<(u16, String)>,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(poll));
    let mut conn = Conn {
        stop,
        stream,
        buf: Vec::new(),
        max_body,
    };
    loop {
        let req = match conn.read_request() {
            ReadOutcome::Request(r) => r,
            ReadOutcome::Bad(status, msg) => {
                let _ = write_response(&mut conn.stream, status, &msg, true);
                break;
            }
            ReadOutcome::Closed => break,
        };
        let connection = req.header("Connection").map(str::to_ascii_lowercase);
        let close = match connection.as_deref() {
            Some("close") => true,
            Some("keep-alive") => false,
            _ => req.http10,
        };
        let Some((status, body)) = handle(&req) else {
            break;
        };
        if write_response(&mut conn.stream, status, &body, close).is_err() || close {
            break;
        }
    }
    let _ = conn.stream.shutdown(Shutdown::Both);
}
