//! The committed `src/bindings.rs` must be exactly what bindgen generates from
//! `include/flb_proxy_abi.h` today. Runs when libclang can be loaded; without
//! libclang it skips with a message, unless `LOCKSTEP_REQUIRE_LIBCLANG=1`
//! (set in CI, which installs libclang-dev), where a missing libclang fails.

#[path = "support/generate.rs"]
mod generate;

#[test]
fn committed_bindings_match_a_fresh_generation() {
    if let Err(e) = generate::load_libclang() {
        if std::env::var("LOCKSTEP_REQUIRE_LIBCLANG").as_deref() == Ok("1") {
            panic!("LOCKSTEP_REQUIRE_LIBCLANG=1 but libclang cannot be loaded: {e}");
        }
        eprintln!("skipping: libclang not found ({e}); install libclang-dev to run this test");
        return;
    }
    let fresh = generate::generate().expect("bindgen runs on the header");
    let path = generate::bindings_path();
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    if fresh != committed {
        let first_diff = fresh
            .lines()
            .zip(committed.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("line {}: fresh `{a}` vs committed `{b}`", i + 1))
            .unwrap_or_else(|| "the files differ in length".to_string());
        panic!(
            "{} is stale ({first_diff}); run `cargo run -p fluent-bit-sys --example regen`",
            path.display()
        );
    }
}
