//! `lockstep_filter.wasm`: the shell between Fluent Bit's `filter_wasm` and
//! [`lockstep_filter::Filter`]. It owns only what the host contract needs
//! (`shared/facts/fluent-bit-wasm-filter.md`):
//!
//! - the exported function `lockstep_filter(tag, tag_len, time_sec, time_nsec, record,
//!   record_len) -> result` in JSON `Event_Format`: returns the input pointer for an
//!   unchanged kept record (no copy), a static `""` for a drop, or a pointer into a
//!   reused output buffer;
//! - exported `malloc`/`free` backed by a bump arena, so the host copies records of any
//!   size through them (WAMR then switches its own app heap off and `Wasm_Heap_Size`
//!   stops mattering). The arena resets whenever every allocation is freed (after each
//!   call: the host frees tag and record right after), so it costs a few instructions;
//! - loading the policy from the first `Accessible_Paths` directory holding
//!   `lockstep-policy.yaml` (or `.json`), with the WASI calls declared below.
//!
//! Built for `wasm32-unknown-unknown`, not `wasm32-wasip1`: a Rust `malloc` export
//! collides with wasi-libc's own `malloc` at link time, and re-exporting wasi-libc's
//! malloc costs ~4 µs a record inside the interpreter (more than the whole Lua filter).
//! Without libc, the six WASI functions the policy loader needs are imported directly;
//! Fluent Bit's WAMR resolves them by module name like any WASI module's.
//!
//! Nothing here panics on any input (a trap leaks interpreter stack in WAMR); a record
//! pointer of 0 (the host's copy failed) is reported once and never dereferenced.
#![cfg(target_arch = "wasm32")]

use lockstep_filter::{Filter, Outcome};
use std::cell::UnsafeCell;

mod wasi {
    #[repr(C)]
    pub struct Prestat {
        pub tag: u8,
        pub name_len: u32,
    }
    #[repr(C)]
    pub struct Iovec {
        pub buf: *mut u8,
        pub len: usize,
    }
    #[repr(C)]
    pub struct Ciovec {
        pub buf: *const u8,
        pub len: usize,
    }
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        pub fn fd_prestat_get(fd: u32, out: *mut Prestat) -> u16;
        pub fn fd_prestat_dir_name(fd: u32, path: *mut u8, len: usize) -> u16;
        #[allow(clippy::too_many_arguments)]
        pub fn path_open(
            dirfd: u32,
            dirflags: u32,
            path: *const u8,
            path_len: usize,
            oflags: u16,
            rights_base: u64,
            rights_inheriting: u64,
            fdflags: u16,
            fd: *mut u32,
        ) -> u16;
        pub fn fd_read(fd: u32, iovs: *const Iovec, iovs_len: usize, nread: *mut usize) -> u16;
        pub fn fd_close(fd: u32) -> u16;
        pub fn fd_write(fd: u32, iovs: *const Ciovec, iovs_len: usize, nwritten: *mut usize)
            -> u16;
    }
    pub const RIGHT_FD_READ: u64 = 1 << 1;
    pub const LOOKUP_SYMLINK_FOLLOW: u32 = 1;
}

/// Writes one line to stderr (Fluent Bit's own).
fn eprint_line(msg: &str) {
    let line = format!("[lockstep_filter] {msg}\n");
    let iov = wasi::Ciovec {
        buf: line.as_ptr(),
        len: line.len(),
    };
    let mut n = 0usize;
    // SAFETY: iov points at `line`, alive for the call; the host writes only `n`.
    unsafe {
        wasi::fd_write(2, &iov, 1, &mut n);
    }
}

/// Preopened directories, in `Accessible_Paths` order (fds from 3 up).
fn preopens() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for fd in 3u32..64 {
        let mut ps = wasi::Prestat {
            tag: 0,
            name_len: 0,
        };
        // SAFETY: `ps` is a valid out-pointer for the call.
        if unsafe { wasi::fd_prestat_get(fd, &mut ps) } != 0 {
            break;
        }
        if ps.tag != 0 {
            continue;
        }
        let mut name = vec![0u8; ps.name_len as usize];
        // SAFETY: `name` has exactly name_len writable bytes.
        if unsafe { wasi::fd_prestat_dir_name(fd, name.as_mut_ptr(), name.len()) } != 0 {
            continue;
        }
        let name = String::from_utf8_lossy(&name)
            .trim_end_matches('\0')
            .to_string();
        out.push((fd, name));
    }
    out
}

fn read_file(dir: u32, name: &str) -> Option<Vec<u8>> {
    let mut fd = 0u32;
    // SAFETY: `name` outlives the call; `fd` is a valid out-pointer.
    let err = unsafe {
        wasi::path_open(
            dir,
            wasi::LOOKUP_SYMLINK_FOLLOW,
            name.as_ptr(),
            name.len(),
            0,
            wasi::RIGHT_FD_READ,
            0,
            0,
            &mut fd,
        )
    };
    if err != 0 {
        return None;
    }
    let mut data = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let iov = wasi::Iovec {
            buf: buf.as_mut_ptr(),
            len: buf.len(),
        };
        let mut n = 0usize;
        // SAFETY: iov describes `buf`, writable for its length; `n` is an out-pointer.
        let e = unsafe { wasi::fd_read(fd, &iov, 1, &mut n) };
        if e != 0 || n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n.min(buf.len())]);
    }
    // SAFETY: closing the fd this function opened.
    unsafe {
        wasi::fd_close(fd);
    }
    Some(data)
}

#[cfg(feature = "yaml")]
const NAMES_DOC: &str = "lockstep-policy.yaml or lockstep-policy.json";
#[cfg(not(feature = "yaml"))]
const NAMES_DOC: &str = "lockstep-policy.json";

/// Finds and compiles the policy; reports the outcome once on stderr.
fn load_filter() -> Filter {
    for (fd, dir) in preopens() {
        #[cfg(feature = "yaml")]
        const NAMES: &[&str] = &["lockstep-policy.yaml", "lockstep-policy.json"];
        // The JSON-only build looks for the JSON file only.
        #[cfg(not(feature = "yaml"))]
        const NAMES: &[&str] = &["lockstep-policy.json"];
        for &name in NAMES {
            let Some(bytes) = read_file(fd, name) else {
                continue;
            };
            let path = format!("{}/{name}", dir.trim_end_matches('/'));
            let text = match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => {
                    eprint_line(&format!(
                        "{path}: not UTF-8 at byte {}; keeping every record (fail-open)",
                        e.utf8_error().valid_up_to()
                    ));
                    return Filter::fail_open();
                }
            };
            let fmt = if name.ends_with(".json") {
                lockstep_filter::Format::Json
            } else {
                lockstep_filter::Format::Yaml
            };
            return match lockstep_filter::compile_policy(&text, fmt, &path) {
                Ok(p) => {
                    eprint_line(&format!(
                        "policy {path}: {}",
                        p.names().collect::<Vec<_>>().join(", ")
                    ));
                    for w in p.warnings() {
                        eprint_line(&format!("warning: {path}: {w}"));
                    }
                    let want = p.settings().kept_trace_memory;
                    let f = Filter::new(p);
                    if want > 0 && f.memory_capacity() == 0 {
                        eprint_line(&format!(
                            "warning: {path}: lockstep.kept_trace_memory {want}: no memory for it; \
                             later lines of kept traces are decided on their own"
                        ));
                    }
                    f
                }
                Err(e) => {
                    eprint_line(&format!("{e}; keeping every record (fail-open)"));
                    Filter::fail_open()
                }
            };
        }
    }
    eprint_line(&format!(
        "no {} in Accessible_Paths: built-in policy (errors + slower than 200 ms)",
        NAMES_DOC
    ));
    Filter::new(lockstep_filter::Policy::default_policy())
}

/// Bump arena behind the exported malloc/free. Blocks never move (a pointer stays valid
/// until freed); when the outstanding count returns to zero the arena resets, keeping
/// its largest block.
///
/// The host calls `malloc` twice and `free` twice per record (tag and record), inside
/// the interpreter, so the fast paths are written for instruction count: the current
/// block is kept as plain addresses (`next`, `end`), an allocation is one compare, an
/// add and a mask, a free a decrement and a compare. No `Vec` is touched on either.
struct Arena {
    blocks: Vec<Vec<u64>>,
    /// Address of the last block's first byte, of its next free byte, and of its end
    /// minus 8 (the slack the rounding below may use). All 0 before the first block.
    start: usize,
    next: usize,
    end: usize,
    outstanding: usize,
}

impl Arena {
    #[inline(always)]
    fn alloc(&mut self, size: usize) -> *mut u8 {
        // `>=`: a block with no room left (or none yet) takes the slow path even for
        // size 0, so a returned pointer is never null and never past a block.
        if size >= self.end - self.next {
            return self.alloc_slow(size);
        }
        let p = self.next;
        // At least one byte further, 8-aligned: distinct pointers, aligned for any
        // type. `p + size < end`, so this ends at most at the block's real end.
        self.next = (p + size + 8) & !7;
        self.outstanding += 1;
        p as *mut u8
    }

    #[inline(never)]
    fn alloc_slow(&mut self, size: usize) -> *mut u8 {
        let Some(words) = size.checked_add(16).map(|b| b / 8) else {
            return std::ptr::null_mut();
        };
        let cap = words
            .max(8 * 1024)
            .max(self.blocks.last().map_or(0, Vec::len));
        if self.blocks.try_reserve(1).is_err() {
            return std::ptr::null_mut();
        }
        let mut b: Vec<u64> = Vec::new();
        if b.try_reserve_exact(cap).is_err() {
            return std::ptr::null_mut();
        }
        b.resize(cap, 0);
        self.start = b.as_mut_ptr() as usize;
        self.next = self.start;
        self.end = self.start + cap * 8 - 8;
        // The block's heap buffer does not move when the Vec value moves into `blocks`.
        self.blocks.push(b);
        self.alloc(size)
    }

    #[inline(always)]
    fn free(&mut self) {
        self.outstanding = self.outstanding.saturating_sub(1);
        if self.outstanding == 0 {
            self.reset();
        }
    }

    /// Nothing is outstanding: the next allocation starts at the last (largest)
    /// block's beginning; older blocks are released.
    #[inline(always)]
    fn reset(&mut self) {
        if self.blocks.len() > 1 {
            self.keep_last_block();
        }
        self.next = self.start;
    }

    #[inline(never)]
    fn keep_last_block(&mut self) {
        let last = self.blocks.pop();
        self.blocks.clear();
        self.blocks.extend(last);
    }
}

struct State {
    arena: Arena,
    filter: Option<Filter>,
    null_reported: bool,
    unreadable_reported: bool,
}

struct Global(UnsafeCell<State>);
// SAFETY: a wasm32 module instance is single-threaded and the host calls it sequentially
// (one WAMR instance per filter instance), so there is never concurrent access.
unsafe impl Sync for Global {}

static STATE: Global = Global(UnsafeCell::new(State {
    arena: Arena {
        blocks: Vec::new(),
        start: 0,
        next: 0,
        end: 0,
        outstanding: 0,
    },
    filter: None,
    null_reported: false,
    unreadable_reported: false,
}));

fn state() -> &'static mut State {
    // SAFETY: see `Global`: calls into the module are sequential and none re-enters
    // another export while holding this reference.
    unsafe { &mut *STATE.0.get() }
}

static EMPTY: [u8; 1] = [0];

#[cfg(not(feature = "host-heap"))]
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut u8 {
    state().arena.alloc(size)
}

#[cfg(not(feature = "host-heap"))]
#[no_mangle]
pub extern "C" fn free(ptr: *mut u8) {
    if !ptr.is_null() {
        state().arena.free();
    }
}

#[no_mangle]
pub extern "C" fn lockstep_filter(
    _tag: *const u8,
    _tag_len: u32,
    _sec: u32,
    _nsec: u32,
    record: *const u8,
    record_len: u32,
) -> *const u8 {
    let st = state();
    let filter = st.filter.get_or_insert_with(load_filter);
    if record.is_null() {
        if !st.null_reported {
            st.null_reported = true;
            eprint_line("the host passed no record (its copy into module memory failed); such records are dropped");
        }
        return EMPTY.as_ptr();
    }
    // SAFETY: the host copied `record_len` bytes (plus a NUL) to `record` in this
    // module's memory and keeps them until the call returns.
    let rec = unsafe { std::slice::from_raw_parts(record, record_len as usize) };
    let before = filter.stats.unreadable;
    let out = match filter.process(rec) {
        Outcome::KeepUnchanged => record,
        Outcome::Drop => EMPTY.as_ptr(),
        Outcome::Keep(text) => text.as_ptr(),
    };
    if filter.stats.unreadable > before && !st.unreadable_reported {
        st.unreadable_reported = true;
        eprint_line("a record was not valid JSON (beyond the host's NaN/Infinity and non-string keys, which are rewritten); kept ones are wrapped as {\"lockstep_unparsed\": ...}");
    }
    out
}

/// Measurement only (feature `bench-phases`): extraction alone with the default
/// policy's aliases, as the filter runs it (always drops).
#[cfg(feature = "bench-phases")]
#[no_mangle]
pub extern "C" fn lockstep_extract_only(
    _tag: *const u8,
    _tag_len: u32,
    _sec: u32,
    _nsec: u32,
    record: *const u8,
    record_len: u32,
) -> *const u8 {
    use std::cell::RefCell;
    thread_local! {
        static EX: RefCell<lockstep_record::Extractor> =
            RefCell::new(lockstep_filter::Policy::default_policy().extractor());
    }
    if !record.is_null() {
        // SAFETY: as in `lockstep_filter`: the host copied `record_len` bytes to `record`.
        let rec = unsafe { std::slice::from_raw_parts(record, record_len as usize) };
        EX.with(|ex| {
            let _ = ex.borrow_mut().extract_host_json(rec);
        });
    }
    EMPTY.as_ptr()
}

/// Measurement only (feature `bench-phases`): the filter over the four-schema sample,
/// `rounds` times, with no host: for instruction-level profiling in an interpreter
/// that traces (`wasm-interp --trace`). Returns the records kept.
#[cfg(feature = "bench-phases")]
#[no_mangle]
pub extern "C" fn lockstep_profile_loop() -> u32 {
    let lines: Vec<Vec<u8>> = lockstep_record::samples::four_schema_lines()
        .into_iter()
        .map(|l| {
            let mut b = l.into_bytes();
            b.push(0);
            b
        })
        .collect();
    let mut f = Filter::new(lockstep_filter::Policy::default_policy());
    let mut kept = 0;
    for _ in 0..8 {
        for l in &lines {
            kept += u32::from(!matches!(f.process(l), Outcome::Drop));
        }
    }
    kept
}
