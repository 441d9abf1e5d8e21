//! A plain loop of extraction + decision, for instruction-level profiling
//! (`valgrind --tool=callgrind target/release/examples/decide_loop`).
use lockstep_policy::{Engine, Policy};
fn main() {
    let lines = lockstep_record::samples::four_schema_lines();
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let mut e = Engine::new(Policy::default_policy());
    let mut kept = 0;
    for i in 0..n {
        kept += e.decide_json(lines[i % lines.len()].as_bytes()).0.keep as usize;
    }
    println!("{kept}");
}
