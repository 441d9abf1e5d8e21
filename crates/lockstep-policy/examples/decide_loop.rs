//! A plain loop of extraction + decision, for instruction-level profiling
//! (`valgrind --tool=callgrind target/release/examples/decide_loop`).
use lockstep_policy::{Engine, Policy};
fn main() {
    let ids = ["4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c"];
    let lines: Vec<String> = ids.iter().map(|t| format!(r#"{{"ts":1795000000248,"level":"info","service":"api","trace_id":"{t}","span_id":"559c854d6e2aad4e","msg":"request finished","duration_ms":12.5,"http":{{"method":"GET","status":200}}}}"#)).chain(ids.iter().map(|t| format!(r#"{{"level":30,"time":1795000000063,"pid":7,"hostname":"edge-1","traceId":"{t}","spanId":"75c454fa23d82792","req":{{"method":"GET","url":"/cart"}},"responseTime":41.2,"msg":"request completed"}}"#))).collect();
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let mut e = Engine::new(Policy::default_policy());
    let mut kept = 0;
    for i in 0..n {
        kept += e.decide_json(lines[i % lines.len()].as_bytes()).0.keep as usize;
    }
    println!("{kept}");
}
