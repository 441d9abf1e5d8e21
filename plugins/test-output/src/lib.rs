//! test-output: a small output plugin built only on `fluent-bit-plugin`,
//! loaded through the proxy host in `lockstep-hosts` to prove the safe layer
//! end to end. It records what it sees as JSON lines in the file named by
//! `record_file`, and logs through the host.
//!
//! Keys: `id` (required), `record_file`, `flush_interval` (duration, default
//! 5s), `buffer_size` (size, default 1M), `fail_init` (bool), `panic_in`
//! (`init`, `flush`, `pre_run`, `pre_exit` or `exit`), `result` (`ok`,
//! `retry`, `error`), `worker` (bool: start a background thread in init,
//! stopped in pre-exit and joined in exit), `probe_logs` (bool: log one line
//! per level in every flush).
//!
//! Invariant: a flush is all or nothing: the chunk is validated before
//! anything is recorded.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use fluent_bit_plugin::decode::{EventKind, Layout};
use fluent_bit_plugin::{
    output_plugin, ByteSize, Chunk, Config, ExitReason, FlushResult, InitError, Instance, MapView,
    OutputPlugin, ValueRef,
};
use serde_json::{json, Map, Value};

/// One instance.
pub struct TestOutput {
    id: String,
    record: Option<Mutex<File>>,
    panic_in: Option<String>,
    result: FlushResult,
    probe_logs: bool,
    worker: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

fn to_json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Nil => Value::Null,
        ValueRef::Bool(b) => json!(b),
        ValueRef::UInt(u) => json!(u),
        ValueRef::Int(i) => json!(i),
        ValueRef::F32(f) => json!(f),
        ValueRef::F64(f) => json!(f),
        ValueRef::Str(s) => json!(s.to_str_lossy()),
        ValueRef::Bin(b) => json!({ "bin": b }),
        ValueRef::Ext(t, b) => json!({ "ext": t, "data": b }),
        ValueRef::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        ValueRef::Map(m) => map_json(m),
    }
}

fn map_json(m: MapView<'_>) -> Value {
    let mut out = Map::new();
    for (k, v) in m.iter() {
        let key = match k {
            ValueRef::Str(s) => s.to_str_lossy().into_owned(),
            other => to_json(other).to_string(),
        };
        out.insert(key, to_json(v));
    }
    Value::Object(out)
}

impl TestOutput {
    fn record(&self, mut line: Value) {
        let Some(file) = &self.record else { return };
        line["id"] = json!(self.id);
        let mut text = line.to_string();
        text.push('\n');
        let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = f.write_all(text.as_bytes()) {
            log::error!("cannot write the record file: {e}");
        }
    }

    fn maybe_panic(&self, at: &str) {
        if self.panic_in.as_deref() == Some(at) {
            panic!("test-output {} told to panic in {at}", self.id);
        }
    }
}

impl OutputPlugin for TestOutput {
    const NAME: &'static std::ffi::CStr = c"test-output";
    const DESCRIPTION: &'static std::ffi::CStr = c"lockstep test output plugin";

    fn init(config: &Config<'_>) -> Result<Self, InitError> {
        let id: String = config.require("id")?;
        let flush_interval = config.get_or("flush_interval", Duration::from_secs(5))?;
        let buffer_size = config.get_or("buffer_size", ByteSize(1 << 20))?;
        let panic_in: Option<String> = config.get("panic_in")?;
        if panic_in.as_deref() == Some("init") {
            panic!("test-output {id} told to panic in init");
        }
        if config.get_or("fail_init", false)? {
            return Err(format!("instance {id}: fail_init is set").into());
        }
        let result = match config.get::<String>("result")?.as_deref() {
            None | Some("ok") => FlushResult::Ok,
            Some("retry") => FlushResult::Retry,
            Some("error") => FlushResult::Error,
            Some(other) => {
                return Err(format!("`result` must be ok, retry or error, not `{other}`").into())
            }
        };
        let record = match config.get::<PathBuf>("record_file")? {
            None => None,
            Some(path) => Some(Mutex::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| format!("record_file {}: {e}", path.display()))?,
            )),
        };
        let worker = if config.get_or("worker", false)? {
            let (tx, rx) = mpsc::channel::<()>();
            let instance = Instance::current();
            let wid = id.clone();
            let handle = std::thread::Builder::new()
                .name(format!("test-output-{id}"))
                .spawn(move || {
                    let _scope = instance.as_ref().map(Instance::enter);
                    log::info!("worker {wid} started");
                    let _ = rx.recv();
                    log::info!("worker {wid} stopping");
                })?;
            Some((tx, handle))
        } else {
            None
        };
        let this = TestOutput {
            id,
            record,
            panic_in,
            result,
            probe_logs: config.get_or("probe_logs", false)?,
            worker: Mutex::new(worker),
        };
        log::info!("initialised {}", this.id);
        this.record(json!({
            "event": "init",
            "flush_interval_ms": flush_interval.as_millis() as u64,
            "buffer_size": buffer_size.bytes(),
            "instance": Instance::current().map(|i| i.label().to_string()),
        }));
        Ok(this)
    }

    fn flush(&self, tag: &str, chunk: Chunk<'_>) -> FlushResult {
        self.maybe_panic("flush");
        if self.probe_logs {
            log::error!("probe error {}", self.id);
            log::warn!("probe warn {}", self.id);
            log::info!("probe info {}", self.id);
            log::debug!("probe debug {}", self.id);
            log::trace!("probe trace {}", self.id);
        }
        if let Err(e) = chunk.validate() {
            log::error!("dropping chunk for tag {tag}: {e}");
            return FlushResult::Error;
        }
        let mut events = Vec::new();
        for record in chunk.events() {
            let Ok(e) = record else {
                return FlushResult::Error;
            };
            events.push(json!({
                "kind": match e.kind {
                    EventKind::Record => "record",
                    EventKind::GroupStart => "group_start",
                    EventKind::GroupEnd => "group_end",
                },
                "layout": match e.layout { Layout::WithMetadata => "v2", Layout::Legacy => "v1" },
                "sec": e.timestamp.sec,
                "nsec": e.timestamp.nsec,
                "metadata": map_json(e.metadata),
                "body": map_json(e.body),
            }));
        }
        let groups: Vec<Value> = chunk
            .records()
            .filter_map(Result::ok)
            .map(|r| match r.group {
                Some(g) => map_json(g.attributes),
                None => Value::Null,
            })
            .collect();
        log::debug!("flush of {} events for tag {tag}", events.len());
        self.record(json!({
            "event": "flush",
            "tag": tag,
            "events": events,
            "record_groups": groups,
        }));
        self.result
    }

    fn pre_run(&self, enable_hot_reload: bool) {
        self.maybe_panic("pre_run");
        self.record(json!({ "event": "pre_run", "enable_hot_reload": enable_hot_reload }));
    }

    fn pre_exit(&self, reason: ExitReason) {
        self.maybe_panic("pre_exit");
        if let Some((tx, _)) = self
            .worker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = tx.send(());
        }
        self.record(json!({ "event": "pre_exit", "reason": format!("{reason:?}") }));
    }

    fn exit(self, reason: ExitReason) {
        self.maybe_panic("exit");
        let worker = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut worker_joined = false;
        if let Some((tx, handle)) = worker {
            let _ = tx.send(());
            worker_joined = handle.join().is_ok();
        }
        log::info!("exiting {}", self.id);
        self.record(json!({
            "event": "exit",
            "reason": format!("{reason:?}"),
            "worker_joined": worker_joined,
        }));
    }
}

output_plugin!(TestOutput);
