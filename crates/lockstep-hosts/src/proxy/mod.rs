//! The dlopen proxy host, as Fluent Bit 5.1 drives an output plugin: the FFI shell
//! is `fluent_bit_sys::host` (the host side of the FFI lives there, beside the plugin
//! side's); this module adds the chunk builder tests feed it with. See
//! [`fluent_bit_sys::host`] for what the host does at each step.

mod chunk;

pub use chunk::{event_time, ChunkBuilder};
pub use fluent_bit_sys::host::{
    run_on_flush_stack, Call, DefSnapshot, FlushCode, FlushReport, HostError, HostOptions,
    InstanceState, LogLine, LogSource, ProxyHost, Registration,
};
pub use rmpv;
