//! `lockstep explain`: one JSON object per input line (see `lockstep_report::explain`).

use crate::for_each_line;
use anyhow::Result;
use lockstep_policy::{Engine, Policy};
use std::io::Write;

pub fn run(policy: &Policy, input: &str) -> Result<u8> {
    let mut engine = Engine::new(policy.clone());
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for_each_line(input, |n, line| {
        let v = lockstep_report::explain::explain_line(&mut engine, n, line);
        serde_json::to_writer(&mut out, &v)?;
        out.write_all(b"\n")?;
        Ok(())
    })?;
    out.flush()?;
    Ok(0)
}
