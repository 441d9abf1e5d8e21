//! The policy playground in a real browser: headless Chromium loads the built page
//! (`dist/playground`, from `scripts/build-playground.sh`) from a local static server, or
//! straight from disk, with a shared-URL fragment and no click; what it renders must
//! equal what `lockstep explain` prints for the same policy and lines.
//!
//! Needs the built page and Debian's `chromium`. `scripts/test.sh` builds the page first;
//! without either the tests say so and pass, unless `LOCKSTEP_REQUIRE_BROWSER=1` (set by
//! `.ci/run`), which makes a missing one a failure.

use base64::Engine as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn required() -> bool {
    std::env::var("LOCKSTEP_REQUIRE_BROWSER").is_ok_and(|v| v == "1")
}

/// Chromium and the built page, or `None` (after saying why) when a local run lacks one.
fn prerequisites() -> Option<(PathBuf, PathBuf)> {
    let chromium = std::env::var_os("CHROMIUM").map(PathBuf::from).or_else(|| {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    });
    let page = root().join("dist/playground");
    let missing = match (&chromium, page.join("index.html").exists()) {
        (None, _) => Some("no chromium (Debian package `chromium`, or set CHROMIUM)"),
        (_, false) => Some("no dist/playground (run scripts/build-playground.sh)"),
        _ => None,
    };
    if let Some(why) = missing {
        assert!(!required(), "LOCKSTEP_REQUIRE_BROWSER=1 and {why}");
        eprintln!("skipped: {why}");
        return None;
    }
    Some((chromium.unwrap(), page))
}

/// A static file server on 127.0.0.1 for `dir`, for the rest of the test process.
fn serve(dir: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut first = String::new();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                    break;
                }
            }
            let path = first.split(' ').nth(1).unwrap_or("/");
            let path = path.split(['?', '#']).next().unwrap_or("/");
            let name = if path == "/" {
                "index.html"
            } else {
                path.trim_start_matches('/')
            };
            let file = dir.join(name);
            let (status, body, mime) = match std::fs::read(&file) {
                Ok(b) if !name.contains("..") => {
                    let mime = match file.extension().and_then(|e| e.to_str()) {
                        Some("html") => "text/html; charset=utf-8",
                        Some("js") => "text/javascript",
                        Some("css") => "text/css",
                        Some("wasm") => "application/wasm",
                        _ => "application/octet-stream",
                    };
                    ("200 OK", b, mime)
                }
                _ => ("404 Not Found", b"not found".to_vec(), "text/plain"),
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: {mime}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(&body);
        }
    });
    format!("http://{addr}/")
}

/// The page's DOM after it has loaded `url` and run its scripts.
fn render(chromium: &Path, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--allow-file-access-from-files",
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).map(|_| s)
    });
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("chromium did not finish with {url:.120}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap().unwrap()
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The text of the element with id `id` (no nested elements inside it).
fn text_of(dom: &str, id: &str) -> String {
    let open = format!("id=\"{id}\"");
    let at = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no #{id} in {dom:.2000}"));
    let start = at + dom[at..].find('>').unwrap() + 1;
    let end = start + dom[start..].find("</").unwrap();
    unescape(&dom[start..end])
}

/// The text (tags dropped) of the first 2,000 bytes after the element with id `id` opens.
fn text_near(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let start = at + dom[at..].find('>').unwrap() + 1;
    let mut end = (start + 2000).min(dom.len());
    while !dom.is_char_boundary(end) {
        end -= 1;
    }
    let (mut out, mut in_tag) = (String::new(), false);
    for c in dom[start..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    unescape(&out)
}

fn attr_after(s: &str, name: &str) -> Option<String> {
    let key = format!("{name}=\"");
    let i = s.find(&key)? + key.len();
    Some(s[i..i + s[i..].find('"')?].to_string())
}

fn body_state(dom: &str) -> String {
    let body = &dom[dom.find("<body").expect("a body")..];
    attr_after(&body[..body.find('>').unwrap()], "data-state").unwrap_or_default()
}

/// `(line, decision)` of every rendered row of the per-line table.
fn rows(dom: &str) -> Vec<(u64, String)> {
    dom.split("<tr ")
        .skip(1)
        .filter_map(|tr| {
            let head = &tr[..tr.find('>')?];
            Some((
                attr_after(head, "data-line")?.parse().ok()?,
                attr_after(head, "data-decision")?,
            ))
        })
        .collect()
}

/// JavaScript's encodeURIComponent.
fn uri_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn compressed_fragment(policy: &str, logs: &str) -> String {
    let state = serde_json::json!({"policy": policy, "logs": logs}).to_string();
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(state.as_bytes()).unwrap();
    let bytes = z.finish().unwrap();
    format!(
        "z={}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// What `lockstep explain` prints for the policy file (or the default) and the lines.
fn cli_explain(policy: Option<&Path>, logs: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("logs.jsonl");
    std::fs::write(&input, logs).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lockstep"));
    cmd.arg("explain");
    if let Some(p) = policy {
        cmd.arg("--policy").arg(p);
    }
    let out = cmd.arg(&input).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The rendered page agrees with the CLI, line for line, in text and in the table.
fn assert_page_matches_cli(dom: &str, cli: &str) {
    assert_eq!(
        body_state(dom),
        "ready",
        "{}",
        text_near(dom, "policy-status")
    );
    let page = text_of(dom, "result-json");
    assert_eq!(page, cli, "#result-json differs from lockstep explain");
    let want: Vec<(u64, String)> = cli
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["line"].as_u64().unwrap(),
                v["decision"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows(dom),
        want,
        "the rendered decisions differ from lockstep explain"
    );
    let kept = want.iter().filter(|(_, d)| d == "keep").count();
    assert!(
        kept > 0 && kept < want.len(),
        "a sample that keeps all or none proves little: {kept}/{}",
        want.len()
    );
}

#[test]
fn a_shared_link_renders_the_cli_decisions_on_load() {
    let Some((chromium, page)) = prerequisites() else {
        return;
    };
    let base = serve(page);
    let policy_path = root().join("golden/four-schemas/lockstep-policy.yaml");
    let policy = std::fs::read_to_string(&policy_path).unwrap();
    let all = std::fs::read_to_string(root().join("golden/four-schemas/logs.jsonl")).unwrap();
    // Short enough for a plain fragment: the first 60 lines (several kept traces).
    let logs: String = all.lines().take(60).map(|l| format!("{l}\n")).collect();
    let url = format!(
        "{base}#policy={}&logs={}",
        uri_component(&policy),
        uri_component(&logs)
    );
    let dom = render(&chromium, &url);
    assert_page_matches_cli(&dom, &cli_explain(Some(&policy_path), &logs));
    // The alias that supplied each field is on the page too.
    assert!(dom.contains("from traceId"), "the alias column is missing");
}

#[test]
fn a_compressed_link_with_a_fluent_bit_config_renders_the_import_and_every_line() {
    let Some((chromium, page)) = prerequisites() else {
        return;
    };
    let base = serve(page);
    let config_path = root().join("golden/fluent-bit/fluent-bit.yaml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let logs = std::fs::read_to_string(root().join("golden/fluent-bit/logs.jsonl")).unwrap();
    let url = format!("{base}#{}", compressed_fragment(&config, &logs));
    assert!(url.len() < 100_000, "{} bytes", url.len());
    let dom = render(&chromium, &url);
    assert_page_matches_cli(&dom, &cli_explain(Some(&config_path), &logs));
    assert!(
        dom.contains("<section id=\"import\">"),
        "the import section is hidden for an imported config"
    );
    assert!(
        dom.contains("fluent-bit pipeline.inputs[0]"),
        "the import summary is missing"
    );
}

#[test]
fn a_bad_policy_is_shown_where_it_breaks() {
    let Some((chromium, page)) = prerequisites() else {
        return;
    };
    let base = serve(page);
    let policy = "policies:\n  - name: slow\n    type: [latency\n";
    let url = format!(
        "{base}#policy={}&logs={}",
        uri_component(policy),
        uri_component("{\"level\":\"error\"}\n")
    );
    let dom = render(&chromium, &url);
    assert_eq!(body_state(&dom), "policy-error");
    let status = text_near(&dom, "policy-status");
    assert!(status.starts_with("line 3, column 11: "), "{status}");
    assert!(text_of(&dom, "result-json").is_empty());
}

#[test]
fn the_page_works_opened_from_disk_with_no_server() {
    let Some((chromium, page)) = prerequisites() else {
        return;
    };
    let logs = std::fs::read_to_string(root().join("golden/drift/logs.jsonl")).unwrap();
    let url = format!(
        "file://{}#policy=&logs={}",
        page.join("index.html").canonicalize().unwrap().display(),
        uri_component(&logs)
    );
    let dom = render(&chromium, &url);
    // The default policy (empty box) and an unreadable line reported with its offset.
    assert_page_matches_cli(&dom, &cli_explain(None, &logs));
    assert!(
        dom.contains("byte offset"),
        "the drift sample's unreadable line is not shown"
    );
}

/// The page's drift report says what `lockstep check` says of implausible duration
/// units (Go slog writes a time.Duration as integer nanoseconds; read as seconds, every
/// request looks slow) and names the unit to set.
#[test]
fn the_drift_report_flags_a_duration_unit_and_names_the_fix() {
    let Some((chromium, page)) = prerequisites() else {
        return;
    };
    let base = serve(page);
    let logs = std::fs::read_to_string(root().join("golden/libraries/slog.jsonl")).unwrap();
    let url = format!("{base}#policy=&logs={}", uri_component(&logs));
    let dom = unescape(&render(&chromium, &url));
    assert!(
        dom.contains("DRIFT implausible durations"),
        "{}",
        body_state(&dom)
    );
    assert!(dom.contains("unit: ns"), "the fix is named");
}

/// A link cut short or edited says so in words where the policy's status goes (never a
/// raw JavaScript error).
#[test]
fn a_broken_link_fragment_is_explained_in_words() {
    let Some((chromium, page)) = prerequisites() else {
        return;
    };
    let base = serve(page);
    for (fragment, want) in [
        ("z=AAAA", "is not compressed playground state"),
        (
            "policy=%E0%A4%A&logs=x",
            "the link's fragment could not be read",
        ),
    ] {
        let dom = unescape(&render(&chromium, &format!("{base}#{fragment}")));
        assert_eq!(body_state(&dom), "fragment-error", "{fragment}");
        let status = text_of(&dom, "policy-status");
        assert!(status.contains(want), "{fragment}: {status}");
        assert!(
            !status.contains("DOMException") && !status.contains("SyntaxError"),
            "{status}"
        );
    }
}
