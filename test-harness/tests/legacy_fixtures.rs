//! Host fidelity with C fixture plugins (tests/fixtures/legacy_plugin.c,
//! compiled here with the system C compiler): legacy symbol fallbacks,
//! register/pre-register/init lookup rules and flush result normalisation.

use std::path::{Path, PathBuf};
use std::process::Command;

use lockstep_hosts::proxy::{
    ChunkBuilder, FlushCode, HostError, HostOptions, LogSource, ProxyHost, Registration,
};

fn fixture(dir: &Path, name: &str, defines: &[&str]) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = dir.join(format!("{name}.so"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let mut cmd = Command::new(&cc);
    cmd.args(["-shared", "-fPIC", "-Wall", "-o"])
        .arg(&out)
        .arg(manifest.join("tests/fixtures/legacy_plugin.c"))
        .arg("-I")
        .arg(manifest.join("../crates/fluent-bit-sys/include"));
    for d in defines {
        cmd.arg(format!("-D{d}"));
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
    assert!(status.success(), "compiling the fixture {name} failed");
    out
}

fn symbols(host: &ProxyHost) -> Vec<(&'static str, Option<i64>)> {
    host.calls().iter().map(|c| (c.symbol, c.arg)).collect()
}

#[test]
fn legacy_flush_and_exit_are_used_when_the_ctx_variants_are_missing() {
    let dir = tempfile::tempdir().unwrap();
    let so = fixture(dir.path(), "legacy", &[]);
    let mut host = ProxyHost::load(&so, HostOptions::default()).unwrap();
    assert_eq!(host.registration(), &Registration::Registered);
    host.add_output("legacy", &[("ret", "1")]).unwrap();
    host.start().unwrap();
    let chunk = ChunkBuilder::new().raw(&[1, 2, 3, 4, 5]).build();
    let report = host.flush(0, "app.log", &chunk).unwrap();
    assert_eq!(report.code, FlushCode::Ok);
    host.shutdown(false);
    assert_eq!(
        symbols(&host),
        [
            ("FLBPluginRegister", None),
            ("FLBPluginInit", None),
            ("FLBPluginFlush", None),
            ("FLBPluginExit", None),
        ]
    );
    let logs: Vec<_> = host
        .take_logs()
        .into_iter()
        .filter(|l| l.source == LogSource::Plugin)
        .collect();
    let messages: Vec<_> = logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "legacy init ret=1",
            "legacy flush tag=app.log size=5",
            "legacy exit"
        ]
    );
    // The host formats printf-style like Fluent Bit does.
    assert_eq!(
        logs[1].format.as_deref(),
        Some("legacy flush tag=%s size=%zu")
    );
    assert!(logs[1].file.ends_with("legacy_plugin.c"));
}

#[test]
fn flush_results_other_than_0_1_2_are_flb_error() {
    let dir = tempfile::tempdir().unwrap();
    let so = fixture(dir.path(), "legacy", &[]);
    for (ret, code) in [
        ("0", FlushCode::Error),
        ("1", FlushCode::Ok),
        ("2", FlushCode::Retry),
        ("7", FlushCode::Error),
        ("-1", FlushCode::Error),
    ] {
        let mut host = ProxyHost::load(&so, HostOptions::default()).unwrap();
        host.add_output("legacy", &[("ret", ret)]).unwrap();
        host.start().unwrap();
        let report = host.flush(0, "t", &[]).unwrap();
        assert_eq!(report.code, code, "ret {ret}");
        assert_eq!(report.raw.to_string(), ret);
    }
}

#[test]
fn a_missing_init_symbol_fails_registration_and_the_output_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let so = fixture(dir.path(), "no_init", &["NO_INIT"]);
    let mut host = ProxyHost::load(&so, HostOptions::default()).unwrap();
    assert_eq!(host.registration(), &Registration::NoInitSymbol);
    assert!(matches!(
        host.add_output("legacy", &[]),
        Err(HostError::UnknownOutput(_))
    ));
    let logs = host.take_logs();
    assert!(logs
        .iter()
        .any(|l| l.message.contains("could not load FLBPluginInit symbol")));
}

#[test]
fn only_exactly_minus_one_fails_register() {
    let dir = tempfile::tempdir().unwrap();
    let so = fixture(dir.path(), "reg_m1", &["REGISTER_RESULT=-1"]);
    let mut host = ProxyHost::load(&so, HostOptions::default()).unwrap();
    assert_eq!(host.registration(), &Registration::RegisterFailed);
    assert!(matches!(
        host.add_output("legacy", &[]),
        Err(HostError::UnknownOutput(_))
    ));
    drop(host);

    let so = fixture(dir.path(), "reg_m2", &["REGISTER_RESULT=-2"]);
    let host = ProxyHost::load(&so, HostOptions::default()).unwrap();
    assert_eq!(host.registration(), &Registration::Registered);
}

#[test]
fn pre_register_gets_the_hot_reloading_flag_and_minus_one_stops_registration() {
    let dir = tempfile::tempdir().unwrap();
    let so = fixture(dir.path(), "pre_m1", &["PRE_REGISTER_RESULT=-1"]);
    let host = ProxyHost::load(&so, HostOptions::default()).unwrap();
    assert_eq!(host.registration(), &Registration::PreRegisterFailed);
    assert_eq!(
        symbols(&host),
        [("FLBPluginPreRegister", Some(0))],
        "register is never called"
    );
    drop(host);

    let so = fixture(dir.path(), "pre_0", &["PRE_REGISTER_RESULT=0"]);
    let opts = HostOptions {
        hot_reloading: true,
        ..HostOptions::default()
    };
    let host = ProxyHost::load(&so, opts).unwrap();
    assert_eq!(host.registration(), &Registration::Registered);
    assert_eq!(
        symbols(&host),
        [
            ("FLBPluginPreRegister", Some(1)),
            ("FLBPluginRegister", None)
        ]
    );
}

#[test]
fn another_proxy_type_is_not_an_output() {
    let dir = tempfile::tempdir().unwrap();
    let so = fixture(dir.path(), "proxy12", &["PROXY=12"]);
    let host = ProxyHost::load(&so, HostOptions::default()).unwrap();
    assert_eq!(
        host.registration(),
        &Registration::Unsupported {
            proxy: 12,
            plugin_type: 2
        }
    );
}
