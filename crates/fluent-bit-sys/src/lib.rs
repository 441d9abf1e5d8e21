//! fluent-bit-sys: raw bindings to Fluent Bit's proxy plugin ABI, the C ABI
//! that Go output plugins use (`fluent-bit -e plugin.so`).
//!
//! What it owns:
//! - `include/flb_proxy_abi.h`, our own statement of the structs, constants and
//!   symbol signatures of the ABI (Fluent Bit 5.1.x, LP64), written from
//!   `shared/facts/fluent-bit-proxy-abi.md`;
//! - `src/bindings.rs`, generated from that header by bindgen and committed,
//!   so building needs no libclang (`cargo run -p fluent-bit-sys --example
//!   regen` rewrites it; `tests/bindings_fresh.rs` fails when it is stale);
//! - `csrc/layout_check.c`, compiled by `cc`, which reports the sizes, offsets
//!   and constants a C compiler sees; the `layout_check` unit test compares
//!   every entry with what Rust sees.
//!
//! - [`export`]: the FFI shell every plugin's exported symbols call (through
//!   [`export_proxy_output!`]): instance boxes behind `remote_context`,
//!   `catch_unwind` at every entry point, the `log` backend over `log_print`.
//!   It is the only module with behaviour on the plugin side, and with `bindings`
//!   the only place of the plugin side's `unsafe`.
//! - [`host`] (feature `host`): the mirror image, a `dlopen` host that drives a
//!   plugin as Fluent Bit 5.1 does (`lockstep-hosts` builds on it); the only place
//!   of the host side's `unsafe`.
//!
//! Invariants:
//! - the bindings are declarations only: no behaviour, no allocation;
//! - every struct is `#[repr(C)]` with the C layout, proven on the build
//!   machine by the layout test and by bindgen's own layout assertions;
//! - `flbgo_output_plugin` states only the four leading fields a plugin may
//!   read; the host's callbacks that follow are deliberately absent, so the
//!   struct must only ever be used behind a pointer the host provides.
//!
//! - no panic crosses the FFI boundary: see [`export`].
//!
//! The safe API for plugin authors (`OutputPlugin`, `Config`, the chunk
//! decoder) is the `fluent-bit-plugin` crate, which has no `unsafe`.

pub mod export;
#[cfg(feature = "host")]
pub mod host;

#[allow(non_camel_case_types, non_upper_case_globals, non_snake_case)]
#[allow(clippy::all)]
mod bindings {
    include!("bindings.rs");
}

pub use bindings::*;

/// Names of the symbols the host looks up with `dlsym`, in the order Fluent
/// Bit 5.1 looks them up.
pub mod symbols {
    /// `int FLBPluginPreRegister(int hot_reloading)`, optional; -1 aborts.
    pub const PRE_REGISTER: &str = "FLBPluginPreRegister";
    /// `int FLBPluginRegister(struct flb_plugin_proxy_def *)`; -1 fails.
    pub const REGISTER: &str = "FLBPluginRegister";
    /// `int FLBPluginInit(void *plugin)`; > 0 succeeds. Missing = failed register.
    pub const INIT: &str = "FLBPluginInit";
    /// `int FLBPluginFlush(const void *, size_t, const char *)`, legacy.
    pub const FLUSH: &str = "FLBPluginFlush";
    /// `int FLBPluginFlushCtx(void *, const void *, size_t, char *)`, preferred.
    pub const FLUSH_CTX: &str = "FLBPluginFlushCtx";
    /// `int FLBPluginExit(void)`, legacy.
    pub const EXIT: &str = "FLBPluginExit";
    /// `int FLBPluginExitCtx(void *remote_ctx)`, preferred.
    pub const EXIT_CTX: &str = "FLBPluginExitCtx";
    /// `int FLBPluginOutputPreRun(int enable_hot_reload)`, optional.
    pub const OUTPUT_PRE_RUN: &str = "FLBPluginOutputPreRun";
    /// `void FLBPluginOutputPreExit(int shutdown_by_hot_reloading)`, optional.
    pub const OUTPUT_PRE_EXIT: &str = "FLBPluginOutputPreExit";
    /// `void FLBPluginUnregister(struct flb_plugin_proxy_def *)`, optional.
    pub const UNREGISTER: &str = "FLBPluginUnregister";
}

#[cfg(test)]
mod layout_check {
    use super::*;
    use std::ffi::{c_char, CStr};
    use std::mem::{align_of, offset_of, size_of};

    extern "C" {
        fn flb_sys_layout_count() -> usize;
        fn flb_sys_layout_name(i: usize) -> *const c_char;
        fn flb_sys_layout_value(i: usize) -> usize;
    }

    /// What Rust sees for one entry of the C table; `None` for a name the
    /// Rust side does not know (which fails the test).
    fn rust_value(name: &str) -> Option<usize> {
        type Def = flb_plugin_proxy_def;
        type Ctx = flb_plugin_proxy_context;
        type Go = flbgo_output_plugin;
        type Api = flb_api;
        Some(match name {
            "flb_plugin_proxy_def.size" => size_of::<Def>(),
            "flb_plugin_proxy_def.align" => align_of::<Def>(),
            "flb_plugin_proxy_def.type" => offset_of!(Def, type_),
            "flb_plugin_proxy_def.proxy" => offset_of!(Def, proxy),
            "flb_plugin_proxy_def.flags" => offset_of!(Def, flags),
            "flb_plugin_proxy_def.name" => offset_of!(Def, name),
            "flb_plugin_proxy_def.description" => offset_of!(Def, description),
            "flb_plugin_proxy_def.event_type" => offset_of!(Def, event_type),
            "flb_plugin_proxy_def.config_map" => offset_of!(Def, config_map),
            "flb_plugin_proxy_context.size" => size_of::<Ctx>(),
            "flb_plugin_proxy_context.align" => align_of::<Ctx>(),
            "flb_plugin_proxy_context.remote_context" => offset_of!(Ctx, remote_context),
            "flb_plugin_proxy_context.proxy" => offset_of!(Ctx, proxy),
            "flbgo_output_plugin.size" => size_of::<Go>(),
            "flbgo_output_plugin.align" => align_of::<Go>(),
            "flbgo_output_plugin.name" => offset_of!(Go, name),
            "flbgo_output_plugin.api" => offset_of!(Go, api),
            "flbgo_output_plugin.o_ins" => offset_of!(Go, o_ins),
            "flbgo_output_plugin.context" => offset_of!(Go, context),
            "flb_api.size" => size_of::<Api>(),
            "flb_api.align" => align_of::<Api>(),
            "flb_api.output_get_property" => offset_of!(Api, output_get_property),
            "flb_api.input_get_property" => offset_of!(Api, input_get_property),
            "flb_api.output_get_cmt_instance" => offset_of!(Api, output_get_cmt_instance),
            "flb_api.input_get_cmt_instance" => offset_of!(Api, input_get_cmt_instance),
            "flb_api.log_print" => offset_of!(Api, log_print),
            "flb_api.input_log_check" => offset_of!(Api, input_log_check),
            "flb_api.output_log_check" => offset_of!(Api, output_log_check),
            "flb_api.custom_get_property" => offset_of!(Api, custom_get_property),
            "flb_api.custom_log_check" => offset_of!(Api, custom_log_check),
            "FLB_PROXY_INPUT_PLUGIN" => FLB_PROXY_INPUT_PLUGIN as usize,
            "FLB_PROXY_OUTPUT_PLUGIN" => FLB_PROXY_OUTPUT_PLUGIN as usize,
            "FLB_PROXY_CUSTOM_PLUGIN" => FLB_PROXY_CUSTOM_PLUGIN as usize,
            "FLB_PROXY_GOLANG" => FLB_PROXY_GOLANG as usize,
            "FLB_PROXY_EVENT_TYPE_LOGS" => FLB_PROXY_EVENT_TYPE_LOGS as usize,
            "FLB_ERROR" => FLB_ERROR as usize,
            "FLB_OK" => FLB_OK as usize,
            "FLB_RETRY" => FLB_RETRY as usize,
            "FLB_LOG_OFF" => FLB_LOG_OFF as usize,
            "FLB_LOG_ERROR" => FLB_LOG_ERROR as usize,
            "FLB_LOG_WARN" => FLB_LOG_WARN as usize,
            "FLB_LOG_INFO" => FLB_LOG_INFO as usize,
            "FLB_LOG_DEBUG" => FLB_LOG_DEBUG as usize,
            "FLB_LOG_TRACE" => FLB_LOG_TRACE as usize,
            "size_t.size" => size_of::<usize>(),
            "int.size" => size_of::<std::ffi::c_int>(),
            "pointer.size" => size_of::<*const u8>(),
            "function_pointer.size" => size_of::<flb_plugin_flush_ctx_fn>(),
            _ => return None,
        })
    }

    #[test]
    fn rust_layouts_match_the_c_compiler() {
        // SAFETY: the three functions come from csrc/layout_check.c, linked by
        // build.rs; they take an index checked against the count and return a
        // pointer to a static NUL-terminated string or a plain number.
        let count = unsafe { flb_sys_layout_count() };
        assert!(count >= 40, "C table unexpectedly short: {count} entries");
        let mut mismatches = Vec::new();
        for i in 0..count {
            // SAFETY: i < count, so the name is a valid static C string.
            let name = unsafe { CStr::from_ptr(flb_sys_layout_name(i)) }
                .to_str()
                .expect("ASCII names");
            // SAFETY: i < count.
            let c_value = unsafe { flb_sys_layout_value(i) };
            match rust_value(name) {
                Some(r) if r == c_value => {}
                Some(r) => mismatches.push(format!("{name}: C {c_value}, Rust {r}")),
                None => mismatches.push(format!("{name}: not checked on the Rust side")),
            }
        }
        assert!(mismatches.is_empty(), "layout mismatches: {mismatches:#?}");
    }

    #[test]
    fn lp64_sizes_from_the_facts_file() {
        // The facts state natural-alignment LP64 layouts; pin the totals so a
        // header edit that changes them is noticed here too.
        assert_eq!(size_of::<flb_plugin_proxy_def>(), 48);
        assert_eq!(offset_of!(flb_plugin_proxy_def, name), 16);
        assert_eq!(offset_of!(flb_plugin_proxy_def, event_type), 32);
        assert_eq!(size_of::<flb_plugin_proxy_context>(), 16);
        assert_eq!(offset_of!(flbgo_output_plugin, context), 24);
        assert_eq!(offset_of!(flb_api, log_print), 32);
        assert_eq!(offset_of!(flb_api, output_log_check), 48);
        assert_eq!(size_of::<flb_api>(), 72);
    }
}
