//! `lockstep check`: a schema-drift report over a sample of log lines (see
//! `lockstep_report::check`).

use crate::for_each_line;
use anyhow::Result;
use lockstep_policy::{Engine, Policy};
use lockstep_report::check::Check;

pub fn run(policy: &Policy, input: &str, as_json: bool) -> Result<u8> {
    let mut engine = Engine::new(policy.clone());
    let mut c = Check::new(policy);
    for_each_line(input, |n, line| {
        c.add(&mut engine, n, line);
        Ok(())
    })?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&c.report())?);
    } else {
        print!("{}", c.render_text());
    }
    Ok(0)
}
