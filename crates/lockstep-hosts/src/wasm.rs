//! A `filter_wasm` host: runs a filter `.wasm` exactly as Fluent Bit 5.1 does
//! (`shared/facts/fluent-bit-wasm-filter.md`), on wasmtime instead of WAMR.
//!
//! Pinned host rules:
//! - one persistent instance per filter; the function is looked up by name on every
//!   record (a wrong name drops every record with an error log);
//! - tag and record are copied in NUL-terminated (`record_len` excludes the NUL) through
//!   the module's exported `malloc`/`free` when it has both, else through an emulated WAMR
//!   app heap of `Wasm_Heap_Size` bytes (values ≤ 8192 mean 8192; rounded up to whole
//!   64 KiB pages minus 1 KiB) that hands out pointer 0 when full — the record is then
//!   dropped without a log line, as in Fluent Bit;
//! - both copies are freed right after the call;
//! - the result is read as a C string: `""` drops; an invalid pointer (out of bounds, no
//!   NUL) drops with a warning and leaves a stale exception that drops the next record
//!   too (whose copy then fails when the module exports malloc);
//! - JSON mode: the text is parsed like yyjson: valid JSON that is not an object drops
//!   with an error; trailing junk after an object is ignored; `{..}{..}` packs two
//!   records; invalid JSON after anything parsed earlier in the same chunk is the
//!   host's double free (Fluent Bit aborts): reported as [`HostAbort`];
//! - msgpack mode: raw msgpack in (no NUL), the result read with `strlen`;
//! - a trap drops the record with an error log;
//! - WASI: `Accessible_Paths` become preopened directories (fds 3, 4, … in order); no
//!   args, no environment; the module's stdout/stderr are captured.

use std::fs::File;
use std::io::Read;
use std::path::{Component, PathBuf};
use wasmtime::{
    Caller, Engine, Extern, Func, Instance, Linker, Memory, Module, Store, TypedFunc, Val,
};

/// `Event_Format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFormat {
    Json,
    Msgpack,
}

/// The `[FILTER] Name wasm` keys the host honours.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    pub wasm_path: PathBuf,
    pub function_name: String,
    pub heap_size: usize,
    pub accessible_paths: Vec<PathBuf>,
    pub event_format: EventFormat,
    /// Count executed wasm instructions (wasmtime fuel) for cost measurements.
    pub meter: bool,
}

impl FilterConfig {
    pub fn new(wasm_path: impl Into<PathBuf>, function_name: &str) -> Self {
        FilterConfig {
            wasm_path: wasm_path.into(),
            function_name: function_name.into(),
            heap_size: 8192,
            accessible_paths: vec![PathBuf::from(".")],
            event_format: EventFormat::Json,
            meter: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WasmHostError {
    #[error("{path}: {msg}")]
    Load { path: String, msg: String },
}

/// Fluent Bit would abort here (exit 134).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Fluent Bit aborts: {0}")]
pub struct HostAbort(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Warn,
    Error,
}

/// What the host did with one record.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterResult {
    /// Kept: the records the host packs (one, or more when the module returned `{..}{..}`).
    Kept(Vec<serde_json::Value>),
    Dropped,
}

struct Wasi {
    preopens: Vec<(String, PathBuf)>,
    files: Vec<Option<File>>,
    stderr: Vec<u8>,
    stdout: Vec<u8>,
}

/// An emulated WAMR app heap (first fit).
struct AppHeap {
    base: usize,
    size: usize,
    used: Vec<(usize, usize)>,
}

impl AppHeap {
    fn alloc(&mut self, len: usize) -> Option<usize> {
        let mut at = self.base;
        self.used.sort_unstable();
        for &(o, l) in &self.used {
            if o - at >= len {
                break;
            }
            at = o + l;
        }
        if at + len > self.base + self.size {
            return None;
        }
        self.used.push((at, len));
        Some(at)
    }
    fn free(&mut self, p: usize) {
        self.used.retain(|&(o, _)| o != p);
    }
}

pub struct WasmFilterHost {
    store: Store<Wasi>,
    instance: Instance,
    memory: Memory,
    malloc: Option<TypedFunc<i32, i32>>,
    free: Option<TypedFunc<i32, ()>>,
    heap: Option<AppHeap>,
    cfg: FilterConfig,
    stale_exception: bool,
    parsed_in_chunk: bool,
    /// The host's log lines.
    pub logs: Vec<(LogLevel, String)>,
    /// Traps so far (each leaks WAMR interpreter stack in the real host).
    pub traps: u64,
}

const EBADF: i32 = 8;
const EINVAL: i32 = 28;
const ENOENT: i32 = 44;
const ENOTCAPABLE: i32 = 76;

fn mem(caller: &mut Caller<'_, Wasi>) -> Option<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

fn write_bytes(caller: &mut Caller<'_, Wasi>, at: i32, bytes: &[u8]) -> bool {
    let Some(m) = mem(caller) else { return false };
    m.write(caller, at as u32 as usize, bytes).is_ok()
}

fn read_bytes(caller: &mut Caller<'_, Wasi>, at: i32, len: usize) -> Option<Vec<u8>> {
    let m = mem(caller)?;
    let mut v = vec![0u8; len];
    m.read(&caller, at as u32 as usize, &mut v).ok()?;
    Some(v)
}

fn iovecs(caller: &mut Caller<'_, Wasi>, iovs: i32, n: i32) -> Option<Vec<(u32, u32)>> {
    let raw = read_bytes(caller, iovs, n as u32 as usize * 8)?;
    Some(
        raw.chunks_exact(8)
            .map(|c| {
                (
                    u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                    u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect(),
    )
}

fn add_wasi(linker: &mut Linker<Wasi>) -> wasmtime::Result<()> {
    let m = "wasi_snapshot_preview1";
    linker.func_wrap(
        m,
        "fd_prestat_get",
        |mut c: Caller<'_, Wasi>, fd: i32, out: i32| -> i32 {
            let Some(name_len) = (fd as usize)
                .checked_sub(3)
                .and_then(|i| c.data().preopens.get(i))
                .map(|p| p.0.len())
            else {
                return EBADF;
            };
            let mut b = [0u8; 8];
            b[4..].copy_from_slice(&(name_len as u32).to_le_bytes());
            if write_bytes(&mut c, out, &b) {
                0
            } else {
                EINVAL
            }
        },
    )?;
    linker.func_wrap(
        m,
        "fd_prestat_dir_name",
        |mut c: Caller<'_, Wasi>, fd: i32, path: i32, len: i32| -> i32 {
            let Some(name) = (fd as usize)
                .checked_sub(3)
                .and_then(|i| c.data().preopens.get(i))
                .map(|p| p.0.clone())
            else {
                return EBADF;
            };
            let n = name.len().min(len as u32 as usize);
            if write_bytes(&mut c, path, &name.as_bytes()[..n]) {
                0
            } else {
                EINVAL
            }
        },
    )?;
    linker.func_wrap(
        m,
        "path_open",
        |mut c: Caller<'_, Wasi>,
         dirfd: i32,
         _df: i32,
         path: i32,
         len: i32,
         oflags: i32,
         _rb: i64,
         _ri: i64,
         _fdf: i32,
         fd_out: i32|
         -> i32 {
            let Some(dir) = (dirfd as usize)
                .checked_sub(3)
                .and_then(|i| c.data().preopens.get(i))
                .map(|p| p.1.clone())
            else {
                return EBADF;
            };
            if oflags != 0 {
                return ENOTCAPABLE; // the filter only reads
            }
            let Some(raw) = read_bytes(&mut c, path, len as u32 as usize) else {
                return EINVAL;
            };
            let rel = PathBuf::from(String::from_utf8_lossy(&raw).into_owned());
            if rel
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
            {
                return ENOTCAPABLE; // no escaping the preopened directory
            }
            let Ok(f) = File::open(dir.join(rel)) else {
                return ENOENT;
            };
            let files = &mut c.data_mut().files;
            files.push(Some(f));
            let fd = (files.len() - 1 + 3 + 64) as u32;
            if write_bytes(&mut c, fd_out, &fd.to_le_bytes()) {
                0
            } else {
                EINVAL
            }
        },
    )?;
    linker.func_wrap(
        m,
        "fd_read",
        |mut c: Caller<'_, Wasi>, fd: i32, iovs: i32, n: i32, nread: i32| -> i32 {
            let idx = (fd as usize).wrapping_sub(3 + 64);
            let Some(list) = iovecs(&mut c, iovs, n) else {
                return EINVAL;
            };
            let mut total = 0u32;
            for (buf, len) in list {
                let mut tmp = vec![0u8; len as usize];
                let got = match c.data_mut().files.get_mut(idx) {
                    Some(Some(f)) => f.read(&mut tmp).unwrap_or(0),
                    _ => return EBADF,
                };
                if !write_bytes(&mut c, buf as i32, &tmp[..got]) {
                    return EINVAL;
                }
                total += got as u32;
                if got < len as usize {
                    break;
                }
            }
            if write_bytes(&mut c, nread, &total.to_le_bytes()) {
                0
            } else {
                EINVAL
            }
        },
    )?;
    linker.func_wrap(m, "fd_close", |mut c: Caller<'_, Wasi>, fd: i32| -> i32 {
        let idx = (fd as usize).wrapping_sub(3 + 64);
        match c.data_mut().files.get_mut(idx) {
            Some(slot @ Some(_)) => {
                *slot = None;
                0
            }
            _ => EBADF,
        }
    })?;
    linker.func_wrap(
        m,
        "fd_write",
        |mut c: Caller<'_, Wasi>, fd: i32, iovs: i32, n: i32, nwritten: i32| -> i32 {
            if fd != 1 && fd != 2 {
                return EBADF;
            }
            let Some(list) = iovecs(&mut c, iovs, n) else {
                return EINVAL;
            };
            let mut total = 0u32;
            for (buf, len) in list {
                let Some(bytes) = read_bytes(&mut c, buf as i32, len as usize) else {
                    return EINVAL;
                };
                if fd == 2 {
                    c.data_mut().stderr.extend_from_slice(&bytes);
                } else {
                    c.data_mut().stdout.extend_from_slice(&bytes);
                }
                total += len;
            }
            if write_bytes(&mut c, nwritten, &total.to_le_bytes()) {
                0
            } else {
                EINVAL
            }
        },
    )?;
    Ok(())
}

impl WasmFilterHost {
    /// Loads the module and instantiates it once, as `filter_wasm` does at init.
    pub fn new(cfg: FilterConfig) -> Result<Self, WasmHostError> {
        let path = cfg.wasm_path.display().to_string();
        let err = |msg: String| WasmHostError::Load {
            path: path.clone(),
            msg,
        };
        let mut ecfg = wasmtime::Config::new();
        ecfg.consume_fuel(cfg.meter);
        let engine = Engine::new(&ecfg).map_err(|e| err(format!("{e:#}")))?;
        let module =
            Module::from_file(&engine, &cfg.wasm_path).map_err(|e| err(format!("{e:#}")))?;
        let preopens = cfg
            .accessible_paths
            .iter()
            .map(|p| (p.display().to_string(), p.clone()))
            .collect();
        let mut store = Store::new(
            &engine,
            Wasi {
                preopens,
                files: vec![],
                stderr: vec![],
                stdout: vec![],
            },
        );
        if cfg.meter {
            store
                .set_fuel(u64::MAX)
                .map_err(|e| err(format!("{e:#}")))?;
        }
        let mut linker = Linker::new(&engine);
        add_wasi(&mut linker).map_err(|e| err(format!("{e:#}")))?;
        let instance = linker
            .instantiate(&mut store, &module)
            .map_err(|e| err(format!("instantiate: {e:#}")))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| err("no exported memory".into()))?;
        let malloc = instance
            .get_typed_func::<i32, i32>(&mut store, "malloc")
            .ok();
        let free = instance.get_typed_func::<i32, ()>(&mut store, "free").ok();
        let (malloc, free) = match (malloc, free) {
            (Some(m), Some(f)) => (Some(m), Some(f)),
            _ => (None, None),
        };
        let heap = if malloc.is_none() {
            let size = cfg.heap_size.max(8192);
            let pages = size.div_ceil(65536);
            let base = memory
                .grow(&mut store, pages as u64)
                .map_err(|e| err(format!("app heap: {e:#}")))? as usize
                * 65536;
            Some(AppHeap {
                base,
                size: pages * 65536 - 1024,
                used: vec![],
            })
        } else {
            None
        };
        Ok(WasmFilterHost {
            store,
            instance,
            memory,
            malloc,
            free,
            heap,
            cfg,
            stale_exception: false,
            parsed_in_chunk: false,
            logs: vec![],
            traps: 0,
        })
    }

    /// Wasm instructions executed so far (with `meter`), host-side copies excluded.
    pub fn instructions(&self) -> u64 {
        u64::MAX - self.store.get_fuel().unwrap_or(u64::MAX)
    }

    /// Whether the module exports malloc/free (then the app heap is off).
    pub fn module_allocates(&self) -> bool {
        self.malloc.is_some()
    }

    /// What the module wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.store.data().stderr).into_owned()
    }

    /// A new chunk starts (the double-free hazard is per chunk).
    pub fn begin_chunk(&mut self) {
        self.parsed_in_chunk = false;
    }

    fn log(&mut self, l: LogLevel, m: String) {
        self.logs.push((l, m));
    }

    /// `wasm_runtime_module_dup_data`: 0 when the copy fails.
    fn dup(&mut self, data: &[u8], nul: bool) -> i32 {
        let len = data.len() + usize::from(nul);
        let ptr = match (&self.malloc, &mut self.heap) {
            (Some(m), _) => match m.call(&mut self.store, len as i32) {
                Ok(p) => p,
                Err(_) => 0,
            },
            (None, Some(h)) => h.alloc(len).map_or(0, |p| p as i32),
            (None, None) => 0,
        };
        if ptr == 0 {
            return 0;
        }
        let mut bytes = data.to_vec();
        if nul {
            bytes.push(0);
        }
        if self
            .memory
            .write(&mut self.store, ptr as u32 as usize, &bytes)
            .is_err()
        {
            return 0;
        }
        ptr
    }

    fn release(&mut self, ptr: i32) {
        if ptr == 0 {
            return;
        }
        match (&self.free, &mut self.heap) {
            (Some(f), _) => {
                let _ = f.call(&mut self.store, ptr);
            }
            (None, Some(h)) => h.free(ptr as u32 as usize),
            _ => {}
        }
    }

    /// Reads a C string at `ptr`: `None` when out of bounds or with no NUL before the end.
    fn c_string(&self, ptr: i32) -> Option<Vec<u8>> {
        let data = self.memory.data(&self.store);
        let start = ptr as u32 as usize;
        let rest = data.get(start..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        Some(rest[..end].to_vec())
    }

    /// Runs one record (its JSON text, as the host's msgpack→JSON conversion wrote it).
    pub fn filter_text(
        &mut self,
        tag: &str,
        time: (u32, u32),
        record_json: &str,
    ) -> Result<FilterResult, HostAbort> {
        let payload: Vec<u8> = match self.cfg.event_format {
            EventFormat::Json => record_json.as_bytes().to_vec(),
            EventFormat::Msgpack => {
                let v: serde_json::Value = serde_json::from_str(record_json)
                    .map_err(|e| HostAbort(format!("test input is not JSON: {e}")))?;
                rmp_serde::to_vec(&v).map_err(|e| HostAbort(e.to_string()))?
            }
        };
        // The function is looked up by name on every record.
        let func: Option<Func> = self
            .instance
            .get_func(&mut self.store, &self.cfg.function_name);
        let Some(func) = func else {
            let n = self.cfg.function_name.clone();
            self.log(
                LogLevel::Error,
                format!("The {n} wasm function is not found."),
            );
            return Ok(FilterResult::Dropped);
        };
        let tag_ptr = self.dup(tag.as_bytes(), true);
        let nul = self.cfg.event_format == EventFormat::Json;
        let mut rec_ptr = self.dup(&payload, nul);
        let stale = std::mem::take(&mut self.stale_exception);
        if stale && self.malloc.is_some() {
            // With a stale exception set, the module allocator's copy fails.
            self.release(rec_ptr);
            rec_ptr = 0;
        }
        let args = [
            Val::I32(tag_ptr),
            Val::I32(tag.len() as i32),
            Val::I32(time.0 as i32),
            Val::I32(time.1 as i32),
            Val::I32(rec_ptr),
            Val::I32(payload.len() as i32),
        ];
        let mut results = [Val::I32(0)];
        let call = func.call(&mut self.store, &args, &mut results);
        let outcome = match call {
            Err(trap) => {
                self.traps += 1;
                self.log(LogLevel::Error, format!("wasm trap: {trap:#}"));
                None
            }
            Ok(()) if stale => {
                self.log(
                    LogLevel::Error,
                    "Got exception running wasm code: stale exception".into(),
                );
                None
            }
            Ok(()) => Some(results[0].i32().unwrap_or(0)),
        };
        let text = match outcome {
            None => None,
            Some(ptr) => match self.c_string(ptr) {
                Some(t) => Some(t),
                None => {
                    self.log(LogLevel::Warn, format!("invalid result pointer {ptr:#x}"));
                    self.stale_exception = true;
                    None
                }
            },
        };
        self.release(tag_ptr);
        self.release(rec_ptr);
        let Some(text) = text else {
            return Ok(FilterResult::Dropped);
        };
        if text.is_empty() && self.cfg.event_format == EventFormat::Json {
            self.log(LogLevel::Debug, "record dropped (empty result)".into());
            return Ok(FilterResult::Dropped);
        }
        match self.cfg.event_format {
            EventFormat::Json => self.parse_json_result(&text),
            EventFormat::Msgpack => match rmp_serde::from_slice::<serde_json::Value>(&text) {
                Ok(v) if v.is_object() => Ok(FilterResult::Kept(vec![v])),
                Ok(_) | Err(_) => {
                    self.log(
                        LogLevel::Error,
                        "could not unpack the msgpack returned by the wasm function".into(),
                    );
                    Ok(FilterResult::Dropped)
                }
            },
        }
    }

    /// yyjson as Fluent Bit calls it.
    fn parse_json_result(&mut self, text: &[u8]) -> Result<FilterResult, HostAbort> {
        let mut stream =
            serde_json::Deserializer::from_slice(text).into_iter::<serde_json::Value>();
        let first = match stream.next() {
            Some(Ok(v)) => v,
            _ => {
                if self.parsed_in_chunk {
                    return Err(HostAbort("double free or corruption: invalid JSON returned after an earlier parse in the chunk".into()));
                }
                self.log(
                    LogLevel::Error,
                    "invalid JSON returned by the wasm function".into(),
                );
                return Ok(FilterResult::Dropped);
            }
        };
        self.parsed_in_chunk = true;
        if !first.is_object() {
            self.log(
                LogLevel::Error,
                "the wasm function returned JSON that is not an object".into(),
            );
            return Ok(FilterResult::Dropped);
        }
        let mut out = vec![first];
        // `{..}{..}` packs as two records; other trailing junk is ignored.
        while let Some(Ok(v)) = stream.next() {
            if v.is_object() {
                out.push(v);
            } else {
                break;
            }
        }
        Ok(FilterResult::Kept(out))
    }

    /// Runs a record given as a JSON value (converted to compact JSON as the host does).
    pub fn filter(
        &mut self,
        tag: &str,
        time: (u32, u32),
        record: &serde_json::Value,
    ) -> Result<FilterResult, HostAbort> {
        let text = record.to_string();
        self.filter_text(tag, time, &text)
    }
}
