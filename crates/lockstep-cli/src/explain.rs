//! `lockstep explain`: one JSON object per input line.

use crate::for_each_line;
use anyhow::Result;
use lockstep_policy::{Engine, Policy};
use lockstep_record::ids::to_hex;
use lockstep_record::{DurationState, Extracted, IdState, LevelState};
use serde_json::{json, Map, Value};
use std::io::Write;

fn id_fields<const N: usize>(out: &mut Map<String, Value>, name: &str, id: &IdState<N>) {
    match id {
        IdState::Valid(b) => {
            out.insert(name.into(), json!(to_hex(b)));
        }
        IdState::Absent => {
            out.insert(name.into(), Value::Null);
        }
        IdState::Invalid(e) => {
            out.insert(name.into(), Value::Null);
            out.insert(format!("{name}_invalid"), json!(e.to_string()));
        }
    }
}

/// The normalised fields of one record, as explain prints them.
pub(crate) fn describe(e: &Extracted) -> Map<String, Value> {
    let mut m = Map::new();
    id_fields(&mut m, "trace_id", &e.trace_id);
    id_fields(&mut m, "span_id", &e.span_id);
    match e.level {
        LevelState::Known(l) => m.insert("level".into(), json!(l.as_str())),
        LevelState::Absent => m.insert("level".into(), Value::Null),
        LevelState::Unknown => {
            m.insert("level".into(), Value::Null);
            m.insert("level_unknown".into(), json!(e.level_raw()))
        }
    };
    match e.duration {
        DurationState::Ms(ms) => m.insert("duration_ms".into(), json!(ms)),
        DurationState::Absent => m.insert("duration_ms".into(), Value::Null),
        DurationState::Invalid => {
            m.insert("duration_ms".into(), Value::Null);
            m.insert("duration_invalid".into(), json!(true))
        }
    };
    m
}

pub fn run(policy: &Policy, input: &str) -> Result<u8> {
    let mut engine = Engine::new(policy.clone());
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for_each_line(input, |n, line| {
        let (d, err) = engine.decide_json(line.as_bytes());
        let mut m = Map::new();
        m.insert("line".into(), json!(n));
        match err {
            None => m.extend(describe(engine.extracted())),
            Some(e) => {
                m.insert("error".into(), json!(e.to_string()));
            }
        }
        m.insert(
            "decision".into(),
            json!(if d.keep { "keep" } else { "drop" }),
        );
        m.insert(
            "reason".into(),
            json!(engine.policy().reason_name(d.reason)),
        );
        if d.skipped > 0 {
            m.insert("skipped_policies".into(), json!(d.skipped));
        }
        serde_json::to_writer(&mut out, &Value::Object(m))?;
        out.write_all(b"\n")?;
        Ok(())
    })?;
    out.flush()?;
    Ok(0)
}
