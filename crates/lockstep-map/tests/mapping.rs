//! The mapping through its public API, on a stack the size of Fluent Bit's
//! flush coroutine stack (64 KiB): a record nested 10,000 maps deep must map
//! without recursing on its depth.

use fluent_bit_chunk::Chunk;
use lockstep_map::{MapStats, Mapping, MappingConfig, MAX_LABEL_VALUE_BYTES};

const DEPTH: usize = 10_000;

/// `{"a":{"a":...{"a":1}}}` with `n` maps, as msgpack.
fn deep(n: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(3 * n + 1);
    for _ in 0..n {
        b.extend_from_slice(&[0x81, 0xa1, b'a']);
    }
    b.push(0x01);
    b
}

fn deep_json(n: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n))
}

fn deep_kv(n: usize) -> String {
    format!("{}1{}", "\"map[a:".repeat(n), "]\"".repeat(n))
}

/// One event `[[EventTime, {}], {"msg":"x","a":deep,"b":deep}]`.
fn chunk() -> Vec<u8> {
    let mut c = vec![0x92, 0x92, 0xd7, 0x00, 0, 0, 0, 1, 0, 0, 0, 0, 0x80];
    c.extend_from_slice(&[0x83, 0xa3, b'm', b's', b'g', 0xa1, b'x', 0xa1, b'a']);
    c.extend_from_slice(&deep(DEPTH));
    c.extend_from_slice(&[0xa1, b'b']);
    c.extend_from_slice(&deep(DEPTH));
    c
}

fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .expect("mapping on a 64 KiB stack")
}

fn config(f: impl FnOnce(&mut MappingConfig)) -> Mapping {
    let mut c = MappingConfig::default();
    f(&mut c);
    Mapping::new(&c).unwrap()
}

#[test]
fn deep_record_json_line_on_a_64k_stack() {
    let mp = config(|c| c.remove_keys = Some("$b['a']['a']".into()));
    let line = on_small_stack(move || {
        let bytes = chunk();
        let rec = Chunk::new(&bytes).records().next().unwrap().unwrap();
        let mut st = MapStats::default();
        mp.map(1, rec.event.body, &mut st).line
    });
    assert_eq!(
        line,
        format!(
            "{{\"msg\":\"x\",\"a\":{},\"b\":{{\"a\":{{}}}}}}",
            deep_json(DEPTH)
        )
    );
}

#[test]
fn deep_record_key_value_line_on_a_64k_stack() {
    let mp = config(|c| {
        c.line_format = Some("key_value".into());
        c.remove_keys = Some("$b['a']['a']".into());
    });
    let line = on_small_stack(move || {
        let bytes = chunk();
        let rec = Chunk::new(&bytes).records().next().unwrap().unwrap();
        mp.map(1, rec.event.body, &mut MapStats::default()).line
    });
    assert_eq!(
        line,
        format!("msg=\"x\" a={} b=\"map[a:\"map[]\"]\"", deep_kv(DEPTH))
    );
}

#[test]
fn deep_label_and_metadata_values_on_a_64k_stack() {
    let mp = config(|c| {
        c.labels = Some("deep=$a".into());
        c.label_keys = Some("$msg".into());
        c.structured_metadata = Some("$b".into());
        c.drop_single_key = Some("raw".into());
    });
    let (e, st) = on_small_stack(move || {
        let bytes = chunk();
        let rec = Chunk::new(&bytes).records().next().unwrap().unwrap();
        let mut st = MapStats::default();
        (mp.map(1, rec.event.body, &mut st), st)
    });
    let full = deep_json(DEPTH);
    assert_eq!(e.labels.len(), 2);
    assert_eq!(e.labels[0].0, "deep");
    assert_eq!(e.labels[0].1, full[..MAX_LABEL_VALUE_BYTES]);
    assert_eq!(e.labels[1], ("msg".to_string(), "x".to_string()));
    assert_eq!(e.structured_metadata, vec![("b".to_string(), full)]);
    assert_eq!(e.line, "{}");
    assert_eq!(st.label_values_truncated, 1);
}
