//! Lazily decoded ids (issue 24: the fast path keeps hex ids as found) against eager
//! decoding (the reference reading), across alias ranks, forms and invalid values; and the claim on
//! `Extracted::trace_key` (equal valid ids <=> equal keys; an invalid id's key never
//! equals a valid one's).
use lockstep_record::*;
use proptest::prelude::*;

const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn ex() -> Extractor {
    Extractor::new(Matcher::new(FieldTable::default(), &[]).unwrap())
}

fn id_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(format!("\"{T}\"")),
        Just(format!("\"{}\"", T.to_uppercase())),
        Just("\"0000000000000000a3ce929d0e0e4736\"".to_string()),
        Just("\"a3ce929d0e0e4736\"".to_string()),
        Just("\"A3CE929D0E0E4736\"".to_string()),
        Just("\"00000000000000000000000000000000\"".to_string()),
        Just("\"zbf92f3577b34da6a3ce929d0e0e4736\"".to_string()),
        Just("\"4bf92f3577b34da6a3ce929d0e0e473\"".to_string()),
        Just(format!("\"00-{T}-00f067aa0ba902b7-01\"")),
        Just("\"\\u0034bf92f3577b34da6a3ce929d0e0e4736\"".to_string()),
        Just("\"4bf92f3577b34da6a3ce929d0e0e473\u{e9}\"".to_string()),
        Just("\"4bf92f3577b34da6a3ce929d0e0e47 6\"".to_string()),
        Just("null".to_string()),
        Just("\"\"".to_string()),
        Just("12345".to_string()),
        Just("\"11859589430429861686\"".to_string()),
        "[0-9a-fA-FgG]{32}".prop_map(|s| format!("\"{s}\"")),
        "[0-9a-fA-F]{16}".prop_map(|s| format!("\"{s}\"")),
    ]
}

fn key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "trace_id",
        "traceId",
        "traceID",
        "trace.id",
        "traceparent",
        "dd.trace_id",
        "span_id",
        "spanId",
        "otherkey",
    ])
}

fn record() -> impl Strategy<Value = String> {
    prop::collection::vec((key(), id_value()), 0..6).prop_map(|kv| {
        let mut s = String::from("{");
        for (i, (k, v)) in kv.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!("\"{k}\":{v}"));
        }
        s.push('}');
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn lazy_ids_equal_eager(text in record()) {
        let mut a = ex();
        let mut b = ex();
        let (fast, _) = a.extract_host_json(text.as_bytes()).unwrap();
        let (slow, _) = b.extract_host_json_reference(text.as_bytes()).unwrap();
        prop_assert_eq!(fast.trace_state(), slow.trace_state(), "{}", text);
        prop_assert_eq!(fast.span_state(), slow.span_state(), "{}", text);
        prop_assert_eq!(fast.trace_source(), slow.trace_source(), "{}", text);
        prop_assert_eq!(fast.trace_id(), slow.trace_id(), "{}", text);
        // A valid id's key is the same whatever path read it.
        if slow.trace_id().is_some() {
            prop_assert_eq!(fast.trace_key(), slow.trace_key(), "{}", text);
        }
    }

    #[test]
    fn trace_key_separates_valid_ids(x in record(), y in record()) {
        let mut a = ex();
        let mut b = ex();
        let (ea, _) = a.extract_host_json(x.as_bytes()).unwrap();
        let (eb, _) = b.extract_host_json(y.as_bytes()).unwrap();
        let (ka, kb) = (ea.trace_key(), eb.trace_key());
        match (ea.trace_id(), eb.trace_id()) {
            (Some(ta), Some(tb)) => prop_assert_eq!(ta == tb, ka == kb, "{} / {}", x, y),
            (Some(_), None) | (None, Some(_)) => {
                prop_assert!(ka.is_none() || kb.is_none() || ka != kb, "{} / {}", x, y)
            }
            (None, None) => {}
        }
    }
}
