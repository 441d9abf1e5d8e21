//! # fluent-bit-chunk
//!
//! What Fluent Bit hands an output plugin, read without FFI: the flush chunk's msgpack
//! events decoded in place ([`decode`]) and decoded values rendered as JSON ([`json`]).
//! A pure library: no FFI, no allocation while decoding, no recursion (Fluent Bit runs a
//! flush on a 64 KiB coroutine stack without a guard page), no panic on any input.
//! `fluent-bit-plugin` re-exports it for plugin authors; `lockstep-map` maps its records
//! to Loki entries.

#![forbid(unsafe_code)]

pub mod decode;
pub mod json;

pub use decode::{Chunk, DecodeError, Event, EventKind, MapView, Record, Timestamp, ValueRef};
