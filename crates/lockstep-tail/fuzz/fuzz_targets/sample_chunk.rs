//! Flush chunks from Fluent Bit (any bytes): every record that decodes goes through the
//! sampling intake (msgpack extraction, OTLP metadata, the policy's facts, the table)
//! without panicking, and the table's decisions and sweep bookkeeping stay consistent.
#![no_main]

use fluent_bit_chunk::Chunk;
use libfuzzer_sys::fuzz_target;
use lockstep_policy::{Policy, TraceFacts};
use lockstep_tail::{Admit, Table, TableConfig};

fuzz_target!(|data: &[u8]| {
    let policy = Policy::default_policy();
    let mut ex = policy.extractor();
    let mut table = Table::new(TableConfig {
        decision_wait_ns: 10,
        num_traces: 4,
        cache_sampled: 2,
        cache_not_sampled: 2,
        max_pinned: usize::MAX,
        cache_reported: 2,
        hold_max_ns: 100,
    });
    let mut waiting = Vec::new();
    for (i, r) in Chunk::new(data).records().enumerate() {
        let Ok(r) = r else { break };
        ex.extract_msgpack(r.event.body);
        ex.merge_otlp_metadata(r.event.metadata);
        let e = ex.last();
        let Some(t) = e.trace_id() else {
            let _ = policy.decide(e);
            continue;
        };
        let mut f = TraceFacts::new(Some(t));
        policy.observe(e, &mut f);
        if let Admit::Wait { .. } = table.admit(&t, i as u64) {
            // every third line's append "fails": its facts never count
            let landed = i % 3 != 2;
            table.landed(&t, landed.then_some(&f));
            if landed {
                waiting.push(t);
            }
        }
    }
    let mut out = Vec::new();
    table.decide_due(u64::MAX, &policy, usize::MAX, &mut out);
    assert_eq!(table.waiting(), 0);
    table.mark_durable(out.iter().map(|d| d.trace));
    for t in &waiting {
        assert!(table.decision(t).is_some());
        table.swept(t);
    }
    assert_eq!(table.pinned(), 0);
});
