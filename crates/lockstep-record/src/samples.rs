//! Sample records for benchmarks and profiling (not used by the library itself): one
//! ~212-byte JSON line per schema of the golden set — canonical, seconds + `ERR`, pino,
//! OTel with a Go duration string — each with its own trace id.

/// The trace ids of [`four_schema_lines`], in order.
pub const TRACE_IDS: [&str; 4] = [
    "4bf92f3577b34da6a3ce929d0e0e4736",
    "0af7651916cd43dd8448eb211c80319c",
    "5b8aa5a2d2c872e8321cf37308d69df2",
    "a3ce929d0e0e47364bf92f3577b34da6",
];

/// Four JSON lines, one per schema.
pub fn four_schema_lines() -> Vec<String> {
    let [a, b, c, d] = TRACE_IDS;
    vec![
        format!(
            r#"{{"ts":1795000000248,"level":"info","service":"api","trace_id":"{a}","span_id":"559c854d6e2aad4e","msg":"request finished","duration_ms":12.5,"http":{{"method":"GET","status":200}}}}"#
        ),
        format!(
            r#"{{"time":1795000000.2939992,"level":"ERR","svc":"billing","trace_id":"{b}","span_id":"1d31690a8ff606eb","message":"charge complete","duration":0.199999,"attempt":1}}"#
        ),
        format!(
            r#"{{"level":30,"time":1795000000063,"pid":7,"hostname":"edge-1","traceId":"{c}","spanId":"75c454fa23d82792","req":{{"method":"GET","url":"/cart"}},"responseTime":41.2,"msg":"request completed"}}"#
        ),
        format!(
            r#"{{"timestamp":"1795000000135566888","severity_number":9,"severity_text":"INFO","trace_id":"{d}","span_id":"3e103337b166af8e","body":"ledger write","latency":"250.3ms","resource":{{"service.name":"ledger"}}}}"#
        ),
    ]
}

/// The lines of the file named by the `LINES` environment variable (one JSON object a
/// line, blank lines skipped), or [`four_schema_lines`] without it: lets the benchmark
/// and profiling examples measure an operator's own records.
pub fn lines_from_env() -> Vec<String> {
    match std::env::var("LINES") {
        Ok(path) => std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("LINES={path}: {e}"))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(String::from)
            .collect(),
        Err(_) => four_schema_lines(),
    }
}
