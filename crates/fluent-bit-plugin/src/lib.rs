//! fluent-bit-plugin: the safe layer for Fluent Bit output plugins written in
//! Rust and loaded through the proxy ABI Go plugins use (`fluent-bit -e x.so`).
//! Plugin authors implement [`OutputPlugin`] and call [`output_plugin!`]; they
//! never touch FFI.
//!
//! What it owns:
//! - [`output_plugin!`], which exports `FLBPluginRegister`, `FLBPluginInit`,
//!   `FLBPluginFlushCtx`, `FLBPluginExitCtx`, `FLBPluginOutputPreRun` and
//!   `FLBPluginOutputPreExit` for one plugin type, through the FFI shell in
//!   `fluent_bit_sys::export` (all the FFI code is there; this crate forbids unsafe_code);
//! - [`Config`]: typed property access in Fluent Bit's notations (pure);
//! - [`decode`]: a zero-copy, non-recursive decoder of flush chunks, and [`json`]:
//!   non-recursive rendering of decoded values as JSON (both re-exported from the pure
//!   `fluent-bit-chunk` crate);
//! - [`Instance`] (re-exported from the shell) for logging from plugin threads;
//!   the shell's `log` backend writes through the host's `log_print` with
//!   `"%s"`, honouring each instance's `Log_Level`.
//!
//! Invariants (kept by the shell in `fluent_bit_sys::export`, stated here for
//! plugin authors):
//! - one plugin value per `[OUTPUT]` instance, boxed behind the instance's
//!   `remote_context`; the shared `flbgo_output_plugin` struct the host passes
//!   to init is read only during that init (its api, o_ins and context are
//!   copied into the instance);
//! - no panic crosses the FFI boundary: every exported symbol runs under
//!   `catch_unwind`; a panic becomes an error log plus `FLB_ERROR` (flush) or a
//!   failed init (-1); plugins must be built with `panic = "unwind"`;
//! - `flush` takes `&self` and may run concurrently for one instance (Fluent
//!   Bit's `Workers`), so plugins are `Send + Sync`;
//! - the flush path runs on Fluent Bit's small coroutine stack (64 KiB by
//!   default, no guard page): the decoder uses constant stack; keep plugin
//!   flush code shallow or hand work to the plugin's own thread;
//! - `FLBPluginOutputPreRun` and `FLBPluginOutputPreExit` carry no instance
//!   context: pre-run is delivered to instances in init order, and pre-exit to
//!   the instance whose `FLBPluginExitCtx` follows it (the host always calls
//!   them as a pair), just before its `exit`.

#![forbid(unsafe_code)]

pub mod config;
pub use fluent_bit_chunk::{decode, json};

pub use config::{ByteSize, CommaList, Config, ConfigError, FromProperty};
pub use decode::{Chunk, DecodeError, Event, EventKind, MapView, Record, Timestamp, ValueRef};
pub use fluent_bit_sys as sys;
pub use fluent_bit_sys::export::{Instance, LogScope};

use std::ffi::CStr;

/// Error returned by [`OutputPlugin::init`]; its message is logged by the host.
pub type InitError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The outcome of one flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlushResult {
    /// Delivered: `FLB_OK`.
    Ok,
    /// Try again later with Fluent Bit's backoff and `Retry_Limit`: `FLB_RETRY`.
    Retry,
    /// Drop the chunk: `FLB_ERROR`.
    Error,
}

impl FlushResult {
    /// The host's return code.
    pub fn code(self) -> std::ffi::c_int {
        match self {
            FlushResult::Ok => sys::FLB_OK,
            FlushResult::Retry => sys::FLB_RETRY,
            FlushResult::Error => sys::FLB_ERROR,
        }
    }
}

/// Why an instance is exiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitReason {
    /// Fluent Bit is shutting down.
    Shutdown,
    /// Fluent Bit is reloading its configuration (hot reload); a new set of
    /// instances will be initialised afterwards in the same process.
    HotReload,
}

/// An output plugin: one value per `[OUTPUT]` instance.
pub trait OutputPlugin: Sized + Send + Sync + 'static {
    /// The name used in `[OUTPUT] Name` (the host copies it).
    const NAME: &'static CStr;
    /// A one-line description (the host keeps the pointer; it is static).
    const DESCRIPTION: &'static CStr;

    /// Creates the instance from its configuration. An error fails Fluent
    /// Bit's start-up as a whole ("output initialization failed"). A
    /// background thread may be started here; [`Instance::current`] gives a
    /// handle for it to log through.
    fn init(config: &Config<'_>) -> Result<Self, InitError>;

    /// Handles one chunk of events for `tag`. May be called concurrently.
    fn flush(&self, tag: &str, chunk: Chunk<'_>) -> FlushResult;

    /// Called once per instance after all instances are initialised, before
    /// the first flush. `enable_hot_reload` is Fluent Bit's setting.
    fn pre_run(&self, enable_hot_reload: bool) {
        let _ = enable_hot_reload;
    }

    /// Called right before [`OutputPlugin::exit`] when the host announced the
    /// exit (it always does): stop accepting work, signal threads.
    fn pre_exit(&self, reason: ExitReason) {
        let _ = reason;
    }

    /// Final call for the instance: join threads, flush what is pending.
    fn exit(self, reason: ExitReason) {
        let _ = reason;
    }
}

/// Adapts an [`OutputPlugin`] to the shell's [`sys::export::ProxyOutput`]
/// (typed config, decoded chunks, [`FlushResult`], [`ExitReason`]). Used by
/// [`output_plugin!`]; plugins do not name it.
#[doc(hidden)]
pub struct Adapter<P>(P);

impl<P: OutputPlugin> sys::export::ProxyOutput for Adapter<P> {
    const NAME: &'static CStr = P::NAME;
    const DESCRIPTION: &'static CStr = P::DESCRIPTION;

    fn init(property: &dyn Fn(&str) -> Option<String>) -> Result<Self, InitError> {
        P::init(&Config::from_fn(property)).map(Adapter)
    }

    fn flush(&self, tag: &str, data: &[u8]) -> std::ffi::c_int {
        self.0.flush(tag, Chunk::new(data)).code()
    }

    fn pre_run(&self, enable_hot_reload: bool) {
        self.0.pre_run(enable_hot_reload)
    }

    fn pre_exit(&self, hot_reload: bool) {
        self.0.pre_exit(exit_reason(hot_reload))
    }

    fn exit(self, hot_reload: bool) {
        self.0.exit(exit_reason(hot_reload))
    }
}

fn exit_reason(hot_reload: bool) -> ExitReason {
    if hot_reload {
        ExitReason::HotReload
    } else {
        ExitReason::Shutdown
    }
}

/// Exports the proxy ABI symbols for `$plugin`, a type implementing
/// [`OutputPlugin`]. Use once, in a `cdylib` crate.
///
/// ```ignore
/// struct MyOutput;
/// impl fluent_bit_plugin::OutputPlugin for MyOutput { /* ... */ }
/// fluent_bit_plugin::output_plugin!(MyOutput);
/// ```
#[macro_export]
macro_rules! output_plugin {
    ($plugin:ty) => {
        $crate::sys::export_proxy_output!($crate::Adapter<$plugin>);
    };
}
