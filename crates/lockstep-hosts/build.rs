//! Compiles csrc/proxy_shim.c: the variadic `log_print` the proxy host hands
//! to plugins, and the small-stack runner used for flushes.

fn main() {
    println!("cargo:rerun-if-changed=csrc/proxy_shim.c");
    cc::Build::new()
        .file("csrc/proxy_shim.c")
        .std("gnu11")
        .warnings(true)
        .compile("lockstep_proxy_shim");
}
