//! The host side of the proxy ABI (feature `host`): the FFI shell of a `dlopen`
//! host for Fluent Bit output plugins built on the proxy ABI,
//! driving a plugin exactly as Fluent Bit 5.1 does (see
//! `shared/facts/fluent-bit-proxy-abi.md`):
//!
//! - load: a file name starting with `flb-` is refused (Fluent Bit routes it
//!   to the C loader); `dlopen(RTLD_LAZY)`; a `calloc`ed definition with type
//!   0; `FLBPluginPreRegister(hot_reloading)` if present (-1 stops);
//!   `FLBPluginRegister(def)` (-1 fails, silently); for proxy 11 and type 2,
//!   `FLBPluginInit` must exist, `FLBPluginFlush`, `FLBPluginFlushCtx`,
//!   `FLBPluginExit`, `FLBPluginExitCtx` are looked up; the name is
//!   `strdup`ed, the description kept by pointer. A failed registration only
//!   shows later, when an `[OUTPUT]` names the plugin.
//! - instances: one `calloc`ed `flb_plugin_proxy_context` each; properties
//!   from a config map, matched without case, first one wins, empty values
//!   unset, core keys (match, alias, log_level, workers, retry_limit, ...)
//!   consumed by the host; `Log_Level` drives `output_log_check`.
//! - start: for each instance in order, the one shared (`malloc`ed, not
//!   zeroed) `flbgo_output_plugin` gets that instance's api, o_ins and context
//!   and `FLBPluginInit` runs; a return <= 0 frees the shared struct and fails
//!   the whole start. Then `FLBPluginOutputPreRun(enable_hot_reload)` once
//!   per instance.
//! - flush: a NUL-terminated `malloc`ed copy of the tag (poisoned and freed
//!   right after), the chunk in a buffer that ends at a guard page (unmapped
//!   after), `FLBPluginFlushCtx(remote_context, ...)` else `FLBPluginFlush`,
//!   on a small stack with a guard page; results other than 0/1/2 become
//!   FLB_ERROR.
//! - shutdown: per instance `FLBPluginOutputPreExit(hot_reload)` then
//!   `FLBPluginExitCtx(remote_context)` (else `FLBPluginExit`), then
//!   `FLBPluginUnregister(def)` and `dlclose`.

//!
//! Like [`crate::export`] on the plugin side, this is where the host side's `unsafe`
//! lives; `lockstep-hosts` builds its proxy host on it with no `unsafe` of its own.

mod api;
#[allow(clippy::module_inception)]
mod host;
mod memory;

pub use api::{LogLine, LogSource};
pub use host::{
    Call, DefSnapshot, FlushCode, FlushReport, HostError, HostOptions, InstanceState, ProxyHost,
    Registration,
};

/// Runs `f` on a fresh stack of `stack_size` bytes with a guard page below it,
/// as the host runs flushes; returns the peak stack use. For tests of the
/// stack itself.
pub fn run_on_flush_stack(stack_size: usize, f: impl FnMut()) -> Option<usize> {
    memory::run_on_small_stack(stack_size, f)
}
