//! `lockstep explain`: one JSON object per input line, with the normalised fields, the
//! alias that supplied each, the decision and its reason.

use lockstep_policy::Engine;
use lockstep_record::fields::FieldTable;
use lockstep_record::ids::to_hex;
use lockstep_record::{DurationState, Extracted, IdState, LevelState};
use serde_json::{json, Map, Value};

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

/// A duration in ms as printed: to the nanosecond, so binary noise from a unit
/// conversion (`12.299999999999999` from 12300000 ns) does not show.
pub fn round_ms(ms: f64) -> f64 {
    if ms.is_finite() && ms.abs() < 1e12 {
        (ms * 1e6).round() / 1e6
    } else {
        ms
    }
}

/// The normalised fields of one record, as explain prints them: `trace_id`, `span_id`,
/// `level`, `duration_ms` (null when absent; `*_invalid`/`level_unknown` say why not).
pub fn describe(e: &Extracted) -> Map<String, Value> {
    let mut m = Map::new();
    id_fields(&mut m, "trace_id", &e.trace_state());
    id_fields(&mut m, "span_id", &e.span_state());
    match e.level {
        LevelState::Known(l) => m.insert("level".into(), json!(l.as_str())),
        LevelState::Absent => m.insert("level".into(), Value::Null),
        LevelState::Unknown => {
            m.insert("level".into(), Value::Null);
            m.insert("level_unknown".into(), json!(e.level_raw()))
        }
    };
    match e.duration {
        DurationState::Ms(ms) => m.insert("duration_ms".into(), json!(round_ms(ms))),
        DurationState::Absent => m.insert("duration_ms".into(), Value::Null),
        DurationState::Invalid => {
            m.insert("duration_ms".into(), Value::Null);
            m.insert("duration_invalid".into(), json!(true))
        }
    };
    m
}

/// Which alias (the key as the policy's field table names it) supplied each field, as
/// `trace_id_from`, `span_id_from`, `level_from`, `duration_from`; absent fields are left
/// out.
pub fn sources(e: &Extracted, table: &FieldTable) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |name: &str, key: Option<&String>| {
        if let Some(k) = key {
            m.insert(name.into(), json!(k));
        }
    };
    put(
        "trace_id_from",
        e.trace_source()
            .and_then(|i| table.trace_id.get(i))
            .map(|a| &a.key),
    );
    put(
        "span_id_from",
        e.span_source()
            .and_then(|i| table.span_id.get(i))
            .map(|a| &a.key),
    );
    put(
        "level_from",
        e.level_source()
            .and_then(|i| table.level.get(i))
            .map(|a| &a.key),
    );
    put(
        "duration_from",
        e.duration_source()
            .and_then(|i| table.duration.get(i))
            .map(|a| &a.key),
    );
    m
}

/// Explains line `n` (its number in the input): the object `lockstep explain` prints.
/// An unreadable line carries `error` (with the byte offset) and the policy's `on_error`
/// decision.
pub fn explain_line(engine: &mut Engine, n: usize, line: &str) -> Value {
    let (d, err) = engine.decide_json(line.as_bytes());
    let mut m = Map::new();
    m.insert("line".into(), json!(n));
    match err {
        None => {
            let e = engine.extracted();
            m.extend(describe(e));
            m.extend(sources(e, engine.policy().matcher().table()));
        }
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
    Value::Object(m)
}

/// Explains every line of a JSON-lines text (numbered as [`crate::lines`] numbers them):
/// the exact text `lockstep explain` prints for the same input, one object a line.
pub fn explain_text(engine: &mut Engine, text: &str) -> String {
    let mut out = String::new();
    for (n, line) in crate::lines(text) {
        out.push_str(&explain_line(engine, n, line).to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_policy::Policy;

    fn explain(text: &str) -> Vec<Value> {
        let mut engine = Engine::new(Policy::default_policy());
        explain_text(&mut engine, text)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_line_names_its_fields_and_the_alias_of_each() {
        let got = explain(concat!(
            r#"{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","severity":"ERR","duration_ms":41.2}"#,
            "\n",
            r#"{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4737","level":"info","latency_ms":250}"#,
            "\n"
        ));
        assert_eq!(got.len(), 2);
        let a = &got[0];
        assert_eq!(a["line"], 1);
        assert_eq!(a["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(a["trace_id_from"], "traceId");
        assert_eq!(a["span_id_from"], "span_id");
        assert_eq!(a["level"], "error");
        assert_eq!(a["level_from"], "severity");
        assert_eq!(a["duration_ms"], 41.2);
        assert_eq!(a["duration_from"], "duration_ms");
        assert_eq!(a["decision"], "keep");
        let b = &got[1];
        assert_eq!(b["level_from"], "level");
        assert_eq!(b["duration_from"], "latency_ms");
        assert_eq!(b["decision"], "keep");
        assert!(b.get("span_id_from").is_none(), "{b}");
        assert_eq!(b["span_id"], Value::Null);
    }

    #[test]
    fn an_unreadable_line_names_its_byte_offset_and_the_next_line_is_still_read() {
        let got = explain("{\"level\":\"error\"}\n{\"level\": \"err\n\n{\"level\":\"error\"}\n");
        assert_eq!(got.len(), 3);
        assert_eq!(got[1]["line"], 2);
        let err = got[1]["error"].as_str().unwrap();
        assert!(err.contains("byte offset 10"), "{err}");
        assert_eq!(got[2]["line"], 4);
        assert_eq!(got[2]["level"], "error");
    }
}
