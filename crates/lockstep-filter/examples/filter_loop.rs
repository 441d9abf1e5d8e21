//! The filter's per-record work in a plain loop, natively, for instruction-level
//! profiling of the code the `.wasm` runs
//! (`valgrind --tool=callgrind target/release/examples/filter_loop`).
use lockstep_filter::{Filter, Outcome, Policy};
fn main() {
    // LINES=file.jsonl profiles other records (one JSON object a line).
    let sample = lockstep_record::samples::lines_from_env();
    let lines: Vec<Vec<u8>> = sample
        .into_iter()
        .map(|l| {
            let mut b = l.into_bytes();
            b.push(0); // as filter_wasm passes it
            b
        })
        .collect();
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let mut f = Filter::new(Policy::default_policy());
    let mut kept = 0;
    for i in 0..n {
        kept += usize::from(!matches!(f.process(&lines[i % lines.len()]), Outcome::Drop));
    }
    println!("kept {kept} of {n}");
}
