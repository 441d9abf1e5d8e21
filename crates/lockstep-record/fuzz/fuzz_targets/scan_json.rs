//! The JSON scanner reads records straight from Fluent Bit: it must never panic, and
//! whenever serde_json accepts a document as an object, the scanner must accept it too
//! and extract exactly what the serde path extracts; the tolerant reading of Fluent Bit's
//! output reads everything the strict path accepts the same way; and the filter's fast
//! reading of Fluent Bit's output accepts exactly what the plain (reference) reading
//! accepts and extracts the same from it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lockstep_record::{Extracted, Extractor, FieldTable, Matcher};

fn summary(e: &Extracted) -> String {
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {} {:?}",
        e.trace_state(),
        e.span_state(),
        e.level,
        e.duration,
        e.trace_source(),
        e.span_source(),
        e.level_source(),
        e.duration_source(),
        e.level_raw(),
        (0..e.attr_count()).map(|i| format!("{:?}", e.attr(i))).collect::<Vec<_>>()
    )
}

fuzz_target!(|data: &[u8]| {
    let table = FieldTable { nested_json: vec!["log".into()], ..FieldTable::default() };
    let mut ex = Extractor::new(Matcher::new(table, &["http.method".into(), "status".into()]).unwrap());
    let fast = ex.extract_json(data).map(summary);
    let _ = lockstep_record::validate_object(data);
    // The tolerant reading of Fluent Bit's output: whatever the strict path accepts, it
    // reads the same, without the host-token flag.
    let host = ex.extract_host_json(data).map(|(e, flag)| (summary(e), flag));
    let reference = ex.extract_host_json_reference(data).map(|(e, flag)| (summary(e), flag));
    assert_eq!(host.as_ref().ok(), reference.as_ref().ok(), "fast and reference host readings differ");
    assert_eq!(host.is_ok(), reference.is_ok(), "fast {host:?} reference {reference:?}");
    if let Ok(f) = &fast {
        assert_eq!(host.as_ref().ok(), Some(&(f.clone(), false)), "tolerant and strict differ on valid input");
    }
    // ... and whatever the tolerant path reads without flagging, the strict path accepts
    // (an unflagged record may be echoed to Fluent Bit, so it must be valid JSON).
    if let Ok((h, false)) = &host {
        assert_eq!(fast.as_ref().ok(), Some(h), "unflagged by the tolerant path, refused by the strict one");
        // (both readers allow the trailing NUL Fluent Bit passes; validation does not)
        let text = data.strip_suffix(&[0]).unwrap_or(data);
        assert!(lockstep_record::validate_object(text).is_ok());
    }
    if serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data).is_ok() {
        let slow = ex.extract_de(&mut serde_json::Deserializer::from_slice(data)).map(summary);
        let fast = fast.unwrap_or_else(|e| panic!("serde_json accepts but the scanner rejects: {e}"));
        assert_eq!(fast, slow.unwrap());
    }
});
