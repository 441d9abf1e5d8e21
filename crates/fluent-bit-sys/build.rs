//! Compiles csrc/layout_check.c, the C side of the layout test in src/lib.rs.
//! It needs only a C compiler (the `cc` crate finds it); libclang is not needed
//! to build this crate because the bindings are committed in src/bindings.rs.

fn main() {
    println!("cargo:rerun-if-changed=include/flb_proxy_abi.h");
    println!("cargo:rerun-if-changed=csrc/layout_check.c");
    cc::Build::new()
        .file("csrc/layout_check.c")
        .include("include")
        .std("c11")
        .warnings(true)
        .extra_warnings(true)
        .compile("flb_sys_layout_check");
    // The host side (feature `host`): the variadic `log_print` it hands to plugins,
    // and the small-stack runner used for flushes.
    println!("cargo:rerun-if-changed=csrc/proxy_shim.c");
    if std::env::var_os("CARGO_FEATURE_HOST").is_some() {
        cc::Build::new()
            .file("csrc/proxy_shim.c")
            .std("gnu11")
            .warnings(true)
            .compile("lockstep_proxy_shim");
    }
}
