//! Records/s of the filter `.wasm` in the filter_wasm host, and the module's own cost
//! per record in executed wasm instructions (wasmtime fuel), against two probe modules
//! that bound the host's share: one that drops everything, one that returns its input.
//!
//! cargo run --release -p lockstep-harness --example filter_bench -- [WASM] [RECORDS]
//! (`LINES=file.jsonl` to measure other records than the four-schema sample;
//! `FLOOR_WASM=scan-floor.wasm`, built by `wat2wasm fluent-bit-conf/bench/scan-floor.wat`,
//! adds its two floor probes: every string boundary found, and every member walked)

use lockstep_hosts::wasm::{FilterConfig, FilterResult, WasmFilterHost};
use std::time::Instant;

/// A module exporting memory and `f` whose body is `body`.
fn probe(body: &[u8]) -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    let sec = |id: u8, b: Vec<u8>, m: &mut Vec<u8>| {
        m.push(id);
        m.push(b.len() as u8);
        m.extend(b);
    };
    sec(
        1,
        vec![1, 0x60, 6, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f],
        &mut m,
    );
    sec(3, vec![1, 0], &mut m);
    sec(5, vec![1, 0, 2], &mut m);
    sec(
        7,
        vec![
            2, 6, b'm', b'e', b'm', b'o', b'r', b'y', 2, 0, 1, b'f', 0, 0,
        ],
        &mut m,
    );
    let mut code = vec![0];
    code.extend_from_slice(body);
    code.push(0x0b);
    let mut cs = vec![1, code.len() as u8];
    cs.extend(code);
    sec(10, cs, &mut m);
    m
}

fn run(name: &str, cfg: FilterConfig, records: &[String], n: usize) {
    let mut h = WasmFilterHost::new(cfg.clone()).expect("load");
    // warm up (policy load happens on the first call)
    for r in records {
        let _ = h.filter_text("bench", (0, 0), r);
    }
    let t = Instant::now();
    let mut kept = 0usize;
    for i in 0..n {
        if i % 256 == 0 {
            h.begin_chunk();
        }
        if let Ok(FilterResult::Kept(_)) =
            h.filter_text("bench", (0, 0), &records[i % records.len()])
        {
            kept += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let mut mcfg = cfg;
    mcfg.meter = true;
    let mut m = WasmFilterHost::new(mcfg).expect("load");
    for r in records {
        let _ = m.filter_text("bench", (0, 0), r);
    }
    let before = m.instructions();
    let k = 4000;
    for i in 0..k {
        let _ = m.filter_text("bench", (0, 0), &records[i % records.len()]);
    }
    let per = (m.instructions() - before) as f64 / k as f64;
    println!("{name:<28} {:>10.0} records/s  {:>7.2} µs/record (host incl.)  {:>8.0} wasm instructions/record  kept {kept}/{n}", n as f64 / secs, secs * 1e6 / n as f64, per);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let wasm = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "dist/lockstep_filter.wasm".into());
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    // LINES=file.jsonl measures other records (one JSON object a line).
    let records = lockstep_record::samples::lines_from_env();
    let avg = records.iter().map(|r| r.len()).sum::<usize>() / records.len();
    println!("{n} records of ~{avg} bytes, wasmtime (cranelift) host emulating filter_wasm");
    let dir = std::env::temp_dir().join(format!("lockstep-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("drop.wasm"), probe(&[0x41, 0])).unwrap(); // i32.const 0 → "" → drop
    std::fs::write(dir.join("echo.wasm"), probe(&[0x20, 4])).unwrap(); // local.get 4 → keep as is
    let probe_cfg = |f: &str| {
        let mut c = FilterConfig::new(dir.join(f), "f");
        c.heap_size = 1 << 20;
        c
    };
    run(
        "probe: drop everything",
        probe_cfg("drop.wasm"),
        &records,
        n,
    );
    run(
        "probe: return the input",
        probe_cfg("echo.wasm"),
        &records,
        n,
    );
    if let Ok(floor) = std::env::var("FLOOR_WASM") {
        for f in ["strings", "members"] {
            run(
                &format!("probe: {f} floor"),
                FilterConfig::new(&floor, f),
                &records,
                n,
            );
        }
    }
    run(
        &format!("lockstep_filter ({wasm})"),
        FilterConfig::new(&wasm, "lockstep_filter"),
        &records,
        n,
    );
    // A module built with `--features bench-phases` also exports the extraction alone.
    if std::env::var("PHASES").is_ok() {
        run(
            "  of which extraction",
            FilterConfig::new(&wasm, "lockstep_extract_only"),
            &records,
            n,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
