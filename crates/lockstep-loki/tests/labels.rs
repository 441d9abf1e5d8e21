use std::collections::BTreeMap;

use lockstep_loki::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn renders_sorted_with_escaping() {
    let l = labels(&[("job", "a\"b\\c\nd\te"), ("app", "x")]);
    assert_eq!(render_labels(&l), r#"{app="x", job="a\"b\\c\nd\te"}"#);
}

#[test]
fn empty_set_and_empty_values() {
    assert_eq!(render_labels(&BTreeMap::new()), "{}");
    assert_eq!(render_labels(&labels(&[("a", ""), ("b", "")])), "{}");
    assert_eq!(
        render_labels(&labels(&[("a", ""), ("b", "1")])),
        r#"{b="1"}"#
    );
}

#[test]
fn sanitises_names() {
    assert_eq!(sanitize_label_name("app"), "app");
    assert_eq!(sanitize_label_name("_ok_9"), "_ok_9");
    assert_eq!(sanitize_label_name("k8s.pod-name"), "k8s_pod_name");
    assert_eq!(sanitize_label_name("9lives"), "_9lives");
    assert_eq!(sanitize_label_name(""), "_");
    assert_eq!(sanitize_label_name("héllo"), "h_llo");
    assert_eq!(sanitize_label_name("a b"), "a_b");
    for n in ["k8s.pod-name", "9lives", "", "héllo", "a b", "\"q\""] {
        assert!(is_valid_label_name(&sanitize_label_name(n)), "{n:?}");
    }
    assert!(!is_valid_label_name("9a"));
    assert!(!is_valid_label_name(""));
    assert!(!is_valid_label_name("a-b"));
    assert_eq!(render_labels(&labels(&[("a.b", "v")])), r#"{a_b="v"}"#);
}

#[test]
fn sanitised_collision_prefers_valid_name() {
    // "a.b" sorts before "a_b"; the already-valid name still wins.
    let l = labels(&[("a.b", "dotted"), ("a_b", "plain")]);
    assert_eq!(render_labels(&l), r#"{a_b="plain"}"#);
    // Two invalid names: the first in byte order wins.
    let l = labels(&[("a-b", "dash"), ("a.b", "dot")]);
    assert_eq!(render_labels(&l), r#"{a_b="dash"}"#);
}

#[test]
fn groups_by_stream_and_sorts_stably() {
    let a = labels(&[("app", "a")]);
    let b = labels(&[("app", "b")]);
    // Same stream after dropping the empty label.
    let a2 = labels(&[("app", "a"), ("x", "")]);
    let items = vec![
        (b.clone(), Entry::new(30, "b30")),
        (a.clone(), Entry::new(20, "a20")),
        (a2.clone(), Entry::new(10, "a10")),
        (a.clone(), Entry::new(20, "a20-second")),
        (b.clone(), Entry::new(5, "b5")),
        (a.clone(), Entry::new(10, "a10-second")),
    ];
    let streams = group_entries(items);
    assert_eq!(streams.len(), 2);
    assert_eq!(streams[0].labels, b);
    assert_eq!(streams[1].labels, a);
    let lines = |s: &Stream| s.entries.iter().map(|e| e.line.clone()).collect::<Vec<_>>();
    assert_eq!(lines(&streams[0]), vec!["b5", "b30"]);
    // Stable: equal timestamps keep input order.
    assert_eq!(
        lines(&streams[1]),
        vec!["a10", "a10-second", "a20", "a20-second"]
    );
}

#[test]
fn group_streams_merges_equal_label_sets() {
    let s = vec![
        Stream {
            labels: labels(&[("a.b", "1")]),
            entries: vec![Entry::new(3, "x3")],
        },
        Stream {
            labels: labels(&[("a_b", "1")]),
            entries: vec![Entry::new(1, "x1")],
        },
    ];
    let g = group_streams(s);
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].labels, labels(&[("a_b", "1")]));
    assert_eq!(
        g[0].entries.iter().map(|e| e.ts_ns).collect::<Vec<_>>(),
        vec![1, 3]
    );
}
