//! The proxy host: loading, registration, instances, init, flush, exit.

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate as sys;
use libloading::os::unix::{Library, RTLD_LAZY};

use super::api::{self, host_log, LogLine};
use super::memory::{run_on_small_stack, GuardedBuf};

/// How the host behaves; the defaults are Fluent Bit's.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// `config->hot_reloading`, passed to `FLBPluginPreRegister` (true when
    /// this load is the result of a hot reload).
    pub hot_reloading: bool,
    /// `config->enable_hot_reload` (service `Hot_Reload`), passed to
    /// `FLBPluginOutputPreRun`.
    pub enable_hot_reload: bool,
    /// Stack size for flushes (`coro_stack_size`): 64 KiB by default.
    pub flush_stack_size: usize,
    /// Log level of instances without `Log_Level` (service `Log_Level`).
    pub default_log_level: i32,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            hot_reloading: false,
            enable_hot_reload: false,
            flush_stack_size: 64 * 1024,
            default_log_level: sys::FLB_LOG_INFO,
        }
    }
}

/// What came of loading the shared object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// An output plugin was registered.
    Registered,
    /// `FLBPluginPreRegister` returned -1.
    PreRegisterFailed,
    /// No `FLBPluginRegister` symbol.
    NoRegisterSymbol,
    /// `FLBPluginRegister` returned -1.
    RegisterFailed,
    /// No `FLBPluginInit` symbol.
    NoInitSymbol,
    /// The definition names another proxy or plugin type.
    Unsupported {
        /// `def->proxy`.
        proxy: i32,
        /// `def->type`.
        plugin_type: i32,
    },
}

/// A host-level failure.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The file name starts with `flb-`.
    #[error("{0}: names starting with `flb-` go to Fluent Bit's C plugin loader, not the proxy")]
    CPluginName(PathBuf),
    /// dlopen failed.
    #[error("[proxy] error opening plugin {path}: '{message}'")]
    Dlopen {
        /// The path.
        path: PathBuf,
        /// dlerror().
        message: String,
    },
    /// No registered output plugin has this name.
    #[error("[output] invalid plugin '{0}'")]
    UnknownOutput(String),
    /// A property value the host itself rejects.
    #[error("[config] invalid value '{value}' for '{key}'")]
    BadProperty {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// An instance's init returned <= 0: Fluent Bit does not start.
    #[error("output initialization failed: '{name}' (instance {instance}) returned {code}")]
    InitFailed {
        /// Instance index.
        instance: usize,
        /// Instance name.
        name: String,
        /// What FLBPluginInit returned.
        code: i32,
    },
    /// No such instance.
    #[error("no instance {0}")]
    NoInstance(usize),
    /// The instance is not in the initialised state.
    #[error("instance {0} is not running (state {1:?})")]
    NotRunning(usize, InstanceState),
    /// Neither FLBPluginFlushCtx nor FLBPluginFlush exists: Fluent Bit would
    /// call a NULL pointer here.
    #[error("the plugin has no flush callback: Fluent Bit would call NULL")]
    NoFlushSymbol,
    /// The flush stack or chunk buffer could not be set up.
    #[error("could not map memory for the flush")]
    Memory,
    /// The host was already started.
    #[error("the host was already started")]
    AlreadyStarted,
}

/// One call the host made into the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The symbol.
    pub symbol: &'static str,
    /// The instance the call was for, when the host knows it.
    pub instance: Option<usize>,
    /// The integer argument, for the calls that take one.
    pub arg: Option<i64>,
    /// The return value, for the calls that return one.
    pub ret: Option<i64>,
}

/// The definition as the plugin left it, plus what the host kept.
#[derive(Debug, Clone)]
pub struct DefSnapshot {
    /// `def->type`.
    pub plugin_type: i32,
    /// `def->proxy`.
    pub proxy: i32,
    /// `def->flags`.
    pub flags: i32,
    /// `def->event_type`.
    pub event_type: i32,
    /// Whether `def->config_map` was NULL.
    pub config_map_is_null: bool,
    /// `def->name` as the plugin set it.
    pub name_ptr: usize,
    /// The host's copy of the name (a different allocation).
    pub host_name_ptr: usize,
    /// `def->description` as the plugin set it.
    pub description_ptr: usize,
    /// The description pointer the host kept (the same pointer).
    pub host_description_ptr: usize,
}

/// The normalised result of a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushCode {
    /// FLB_OK.
    Ok,
    /// FLB_RETRY.
    Retry,
    /// FLB_ERROR, or any value other than 0, 1, 2.
    Error,
}

/// What one flush did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushReport {
    /// What the host makes of the result.
    pub code: FlushCode,
    /// What the plugin returned.
    pub raw: i32,
    /// Peak bytes of the flush stack used.
    pub stack_peak: usize,
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    /// Configured, init not run.
    Created,
    /// Init succeeded.
    Running,
    /// Init failed.
    Failed,
    /// Exit ran.
    Exited,
}

/// Keys Fluent Bit's output instance consumes itself: not visible through
/// `output_get_property`.
const CORE_KEYS: &[&str] = &[
    "name",
    "match",
    "match_regex",
    "alias",
    "host",
    "port",
    "ipv6",
    "keepalive",
    "keepalive_timeout",
    "retry_limit",
    "log_level",
    "log_suppress_interval",
    "workers",
    "storage.total_limit_size",
    "tls",
    "tls.verify",
    "tls.debug",
    "tls.vhost",
    "tls.ca_path",
    "tls.ca_file",
    "tls.crt_file",
    "tls.key_file",
    "tls.key_passwd",
];

fn parse_log_level(v: &str) -> Option<i32> {
    Some(match v.trim().to_ascii_lowercase().as_str() {
        "off" => sys::FLB_LOG_OFF,
        "error" => sys::FLB_LOG_ERROR,
        "warn" | "warning" => sys::FLB_LOG_WARN,
        "info" => sys::FLB_LOG_INFO,
        "debug" => sys::FLB_LOG_DEBUG,
        "trace" => sys::FLB_LOG_TRACE,
        _ => return None,
    })
}

/// What `o_ins` points to: one output instance as the plugin sees it.
pub(crate) struct InstanceHost {
    name: String,
    properties: Vec<(String, Option<CString>)>,
    log_level: AtomicI32,
    lookups: Mutex<Vec<String>>,
}

impl InstanceHost {
    pub(crate) fn property(&self, key: &str) -> Option<&CStr> {
        self.properties
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| v.as_deref())
    }

    pub(crate) fn log_level(&self) -> i32 {
        self.log_level.load(Ordering::Relaxed)
    }

    pub(crate) fn record_property_lookup(&self, key: &str) {
        self.lookups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(key.to_string());
    }
}

struct Slot {
    host: Box<InstanceHost>,
    context: *mut sys::flb_plugin_proxy_context,
    state: InstanceState,
}

/// Fluent Bit's `struct flbgo_output_plugin`: the four fields a plugin may
/// read, then the host's own callbacks.
#[repr(C)]
struct GoOutputPlugin {
    head: sys::flbgo_output_plugin,
    cb_init: sys::flb_plugin_init_fn,
    cb_flush: sys::flb_plugin_flush_fn,
    cb_flush_ctx: sys::flb_plugin_flush_ctx_fn,
    cb_exit: sys::flb_plugin_exit_fn,
    cb_exit_ctx: sys::flb_plugin_exit_ctx_fn,
}

#[derive(Default, Clone, Copy)]
struct Symbols {
    init: sys::flb_plugin_init_fn,
    flush: sys::flb_plugin_flush_fn,
    flush_ctx: sys::flb_plugin_flush_ctx_fn,
    exit: sys::flb_plugin_exit_fn,
    exit_ctx: sys::flb_plugin_exit_ctx_fn,
    pre_run: sys::flb_plugin_output_pre_run_fn,
    pre_exit: sys::flb_plugin_output_pre_exit_fn,
    unregister: sys::flb_plugin_unregister_fn,
}

static SERIAL: Mutex<()> = Mutex::new(());

/// A loaded plugin `.so` with its instances: one Fluent Bit process's view.
pub struct ProxyHost {
    path: PathBuf,
    options: HostOptions,
    lib: Option<Library>,
    api: Box<sys::flb_api>,
    def: *mut sys::flb_plugin_proxy_def,
    def_after_register: Option<sys::flb_plugin_proxy_def>,
    registration: Registration,
    name: Option<CString>,
    description: *const c_char,
    go: *mut GoOutputPlugin,
    symbols: Symbols,
    instances: Vec<Slot>,
    calls: Mutex<Vec<Call>>,
    started: bool,
    exited: bool,
    _serial: MutexGuard<'static, ()>,
}

// SAFETY: the raw pointers are resources the host owns (def, go, contexts) or
// the plugin's static strings; shared access only reads them, and every
// mutation goes through &mut self. Concurrent flushes are what Fluent Bit
// does with Workers > 0; the plugin must support them.
unsafe impl Sync for ProxyHost {}

fn dlsym<T: Copy>(lib: &Library, name: &str) -> Option<T> {
    let cname = CString::new(name).ok()?;
    // SAFETY: the symbol's type is the ABI's function pointer type for that
    // name (checked by fluent-bit-sys's layout and signature header);
    // libloading clears and checks dlerror like Fluent Bit's lookup.
    unsafe { lib.get::<T>(cname.as_bytes_with_nul()).ok().map(|s| *s) }
}

impl ProxyHost {
    /// Loads a plugin like `fluent-bit -e path` (Fluent Bit 5.1's proxy).
    /// Only one host exists per process at a time: this waits for others.
    pub fn load(path: impl AsRef<Path>, options: HostOptions) -> Result<ProxyHost, HostError> {
        let serial = Self::serial();
        api::take_logs();
        let path = path.as_ref().to_path_buf();
        let base = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if base.starts_with("flb-") {
            return Err(HostError::CPluginName(path));
        }
        // SAFETY: loading a shared object runs its initialisers; the plugins
        // under test are ours.
        let lib =
            unsafe { Library::open(Some(&path), RTLD_LAZY) }.map_err(|e| HostError::Dlopen {
                path: path.clone(),
                message: e.to_string(),
            })?;
        // SAFETY: calloc of one definition; checked for NULL below.
        let def = unsafe { libc::calloc(1, std::mem::size_of::<sys::flb_plugin_proxy_def>()) }
            .cast::<sys::flb_plugin_proxy_def>();
        assert!(!def.is_null(), "calloc failed");
        let mut host = ProxyHost {
            path,
            options,
            lib: Some(lib),
            api: api::new_api(),
            def,
            def_after_register: None,
            registration: Registration::NoRegisterSymbol,
            name: None,
            description: std::ptr::null(),
            go: std::ptr::null_mut(),
            symbols: Symbols::default(),
            instances: Vec::new(),
            calls: Mutex::new(Vec::new()),
            started: false,
            exited: false,
            _serial: serial,
        };
        host.registration = host.register();
        if host.registration != Registration::Registered {
            host_log(
                sys::FLB_LOG_DEBUG,
                format!(
                    "[proxy] {} not registered: {:?}",
                    host.path.display(),
                    host.registration
                ),
            );
        }
        Ok(host)
    }

    /// Waits (up to a minute) until no other host is alive in the process.
    fn serial() -> MutexGuard<'static, ()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match SERIAL.try_lock() {
                Ok(g) => return g,
                Err(std::sync::TryLockError::Poisoned(e)) => return e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "another ProxyHost has been alive in this process for a minute; \
                         only one may exist at a time (drop it before loading again)"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
    }

    fn record(
        &self,
        symbol: &'static str,
        instance: Option<usize>,
        arg: Option<i64>,
        ret: Option<i64>,
    ) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Call {
                symbol,
                instance,
                arg,
                ret,
            });
    }

    fn register(&mut self) -> Registration {
        let Some(lib) = self.lib.as_ref() else {
            return Registration::NoRegisterSymbol;
        };
        let pre_register: sys::flb_plugin_pre_register_fn =
            dlsym(lib, sys::symbols::PRE_REGISTER).flatten();
        let register: sys::flb_plugin_register_fn = dlsym(lib, sys::symbols::REGISTER).flatten();
        if let Some(pre) = pre_register {
            let arg = c_int::from(self.options.hot_reloading);
            // SAFETY: FLBPluginPreRegister(int) per the ABI.
            let ret = unsafe { pre(arg) };
            self.record(
                sys::symbols::PRE_REGISTER,
                None,
                Some(arg.into()),
                Some(ret.into()),
            );
            if ret == -1 {
                return Registration::PreRegisterFailed;
            }
        }
        let Some(register) = register else {
            return Registration::NoRegisterSymbol;
        };
        // SAFETY: def is our calloc'ed definition; the type is 0 like
        // Fluent Bit's `-e` loader passes.
        unsafe { (*self.def).type_ = 0 };
        // SAFETY: FLBPluginRegister(def) with a writable definition.
        let ret = unsafe { register(self.def) };
        self.record(sys::symbols::REGISTER, None, None, Some(ret.into()));
        if ret == -1 {
            return Registration::RegisterFailed;
        }
        // SAFETY: def is ours and initialised (calloc + plugin writes).
        let def = unsafe { *self.def };
        self.def_after_register = Some(def);
        if def.proxy != sys::FLB_PROXY_GOLANG || def.type_ != sys::FLB_PROXY_OUTPUT_PLUGIN {
            return Registration::Unsupported {
                proxy: def.proxy,
                plugin_type: def.type_,
            };
        }
        let lib = self.lib.as_ref().expect("checked above");
        let init: sys::flb_plugin_init_fn = dlsym(lib, sys::symbols::INIT).flatten();
        if init.is_none() {
            host_log(
                sys::FLB_LOG_ERROR,
                "[go proxy]: could not load FLBPluginInit symbol".into(),
            );
            return Registration::NoInitSymbol;
        }
        self.symbols = Symbols {
            init,
            flush: dlsym(lib, sys::symbols::FLUSH).flatten(),
            flush_ctx: dlsym(lib, sys::symbols::FLUSH_CTX).flatten(),
            exit: dlsym(lib, sys::symbols::EXIT).flatten(),
            exit_ctx: dlsym(lib, sys::symbols::EXIT_CTX).flatten(),
            pre_run: dlsym(lib, sys::symbols::OUTPUT_PRE_RUN).flatten(),
            pre_exit: dlsym(lib, sys::symbols::OUTPUT_PRE_EXIT).flatten(),
            unregister: dlsym(lib, sys::symbols::UNREGISTER).flatten(),
        };
        let name = if def.name.is_null() {
            CString::default()
        } else {
            // SAFETY: the plugin set a NUL-terminated name (strdup in Fluent Bit).
            unsafe { CStr::from_ptr(def.name) }.to_owned()
        };
        // SAFETY: malloc'ed, not zeroed (as in Fluent Bit): fill with a
        // pattern so a plugin reading an unset field sees garbage, then set
        // the host's callbacks and the name.
        unsafe {
            let go = libc::malloc(std::mem::size_of::<GoOutputPlugin>()).cast::<GoOutputPlugin>();
            assert!(!go.is_null(), "malloc failed");
            std::ptr::write_bytes(go.cast::<u8>(), 0xA5, std::mem::size_of::<GoOutputPlugin>());
            std::ptr::addr_of_mut!((*go).cb_init).write(self.symbols.init);
            std::ptr::addr_of_mut!((*go).cb_flush).write(self.symbols.flush);
            std::ptr::addr_of_mut!((*go).cb_flush_ctx).write(self.symbols.flush_ctx);
            std::ptr::addr_of_mut!((*go).cb_exit).write(self.symbols.exit);
            std::ptr::addr_of_mut!((*go).cb_exit_ctx).write(self.symbols.exit_ctx);
            std::ptr::addr_of_mut!((*go).head.name).write(libc::strdup(name.as_ptr()));
            self.go = go;
        }
        self.description = def.description;
        self.name = Some(name);
        Registration::Registered
    }

    /// What came of loading.
    pub fn registration(&self) -> &Registration {
        &self.registration
    }

    /// The registered plugin name (the host's copy).
    pub fn plugin_name(&self) -> Option<String> {
        self.name.as_ref().map(|n| n.to_string_lossy().into_owned())
    }

    /// The description, read through the pointer the host kept.
    pub fn description(&self) -> Option<String> {
        if self.description.is_null() {
            return None;
        }
        // SAFETY: the ABI requires the plugin to keep the description valid;
        // reading it late is exactly what Fluent Bit does (e.g. `-h`).
        Some(
            unsafe { CStr::from_ptr(self.description) }
                .to_string_lossy()
                .into_owned(),
        )
    }

    /// The definition as the plugin filled it.
    pub fn def_snapshot(&self) -> Option<DefSnapshot> {
        let d = self.def_after_register?;
        Some(DefSnapshot {
            plugin_type: d.type_,
            proxy: d.proxy,
            flags: d.flags,
            event_type: d.event_type,
            config_map_is_null: d.config_map.is_null(),
            name_ptr: d.name as usize,
            host_name_ptr: self.name.as_ref().map_or(0, |n| n.as_ptr() as usize),
            description_ptr: d.description as usize,
            host_description_ptr: self.description as usize,
        })
    }

    /// Adds an `[OUTPUT]` section: `name` is its `Name`, `properties` the rest.
    pub fn add_output(
        &mut self,
        name: &str,
        properties: &[(&str, &str)],
    ) -> Result<usize, HostError> {
        let registered = self.registration == Registration::Registered
            && self.plugin_name().is_some_and(|n| {
                let proto = name.split("://").next().unwrap_or(name);
                n.eq_ignore_ascii_case(proto)
            });
        if !registered {
            host_log(
                sys::FLB_LOG_ERROR,
                format!("[output] invalid plugin '{name}'"),
            );
            return Err(HostError::UnknownOutput(name.to_string()));
        }
        let mut log_level = self.options.default_log_level;
        let mut props = Vec::new();
        for (k, v) in properties {
            if k.eq_ignore_ascii_case("log_level") {
                log_level = parse_log_level(v).ok_or_else(|| HostError::BadProperty {
                    key: k.to_string(),
                    value: v.to_string(),
                })?;
                continue;
            }
            if CORE_KEYS.iter().any(|c| c.eq_ignore_ascii_case(k)) {
                continue;
            }
            let value = if v.is_empty() {
                None
            } else {
                Some(CString::new(*v).map_err(|_| HostError::BadProperty {
                    key: k.to_string(),
                    value: v.to_string(),
                })?)
            };
            props.push((k.to_string(), value));
        }
        let index = self.instances.len();
        // SAFETY: calloc of one context (zeroed: remote_context NULL).
        let context =
            unsafe { libc::calloc(1, std::mem::size_of::<sys::flb_plugin_proxy_context>()) }
                .cast::<sys::flb_plugin_proxy_context>();
        assert!(!context.is_null(), "calloc failed");
        self.instances.push(Slot {
            host: Box::new(InstanceHost {
                name: format!("{}.{index}", self.plugin_name().unwrap_or_default()),
                properties: props,
                log_level: AtomicI32::new(log_level),
                lookups: Mutex::new(Vec::new()),
            }),
            context,
            state: InstanceState::Created,
        });
        Ok(index)
    }

    /// Initialises every instance in order, then runs pre-run for each, as
    /// Fluent Bit's start does. The first failed init fails the whole start
    /// (and, as in Fluent Bit, frees the shared plugin struct).
    pub fn start(&mut self) -> Result<(), HostError> {
        if self.started {
            return Err(HostError::AlreadyStarted);
        }
        self.started = true;
        for i in 0..self.instances.len() {
            let init = self.symbols.init.expect("registered plugins have init");
            let slot = &self.instances[i];
            // SAFETY: go is the live shared struct (non-null while
            // registered and no init has failed); set the fields Fluent Bit
            // sets, then call FLBPluginInit(plugin).
            let ret = unsafe {
                (*self.go).head.api = (&*self.api as *const sys::flb_api).cast_mut().cast();
                (*self.go).head.o_ins = (&*slot.host as *const InstanceHost).cast_mut().cast();
                (*self.go).head.context = slot.context;
                init(self.go.cast())
            };
            self.record(sys::symbols::INIT, Some(i), None, Some(ret.into()));
            if ret <= 0 {
                let plugin = self.plugin_name().unwrap_or_default();
                host_log(
                    sys::FLB_LOG_ERROR,
                    format!("[go proxy]: plugin '{plugin}' failed to initialize"),
                );
                host_log(
                    sys::FLB_LOG_ERROR,
                    format!("[output] could not initialize '{plugin}' plugin"),
                );
                host_log(
                    sys::FLB_LOG_ERROR,
                    "[engine] output initialization failed".into(),
                );
                // SAFETY: Fluent Bit frees the shared struct here.
                unsafe {
                    libc::free((*self.go).head.name.cast());
                    libc::free(self.go.cast());
                }
                self.go = std::ptr::null_mut();
                self.instances[i].state = InstanceState::Failed;
                return Err(HostError::InitFailed {
                    instance: i,
                    name: self.instances[i].host.name.clone(),
                    code: ret,
                });
            }
            self.instances[i].state = InstanceState::Running;
        }
        if let Some(pre_run) = self.symbols.pre_run {
            for i in 0..self.instances.len() {
                let arg = c_int::from(self.options.enable_hot_reload);
                // SAFETY: FLBPluginOutputPreRun(int) per the ABI.
                let ret = unsafe { pre_run(arg) };
                self.record(
                    sys::symbols::OUTPUT_PRE_RUN,
                    Some(i),
                    Some(arg.into()),
                    Some(ret.into()),
                );
            }
        }
        Ok(())
    }

    /// Flushes one chunk to one instance, like Fluent Bit's proxy flush.
    pub fn flush(&self, instance: usize, tag: &str, data: &[u8]) -> Result<FlushReport, HostError> {
        let slot = self
            .instances
            .get(instance)
            .ok_or(HostError::NoInstance(instance))?;
        if slot.state != InstanceState::Running {
            return Err(HostError::NotRunning(instance, slot.state));
        }
        let (flush_ctx, flush) = (self.symbols.flush_ctx, self.symbols.flush);
        if flush_ctx.is_none() && flush.is_none() {
            return Err(HostError::NoFlushSymbol);
        }
        let chunk = GuardedBuf::new(data).ok_or(HostError::Memory)?;
        // SAFETY: tag_len + 1 bytes, NUL-terminated copy, freed below.
        let tag_buf = unsafe {
            let buf = libc::malloc(tag.len() + 1).cast::<c_char>();
            assert!(!buf.is_null(), "malloc failed");
            std::ptr::copy_nonoverlapping(tag.as_ptr().cast::<c_char>(), buf, tag.len());
            *buf.add(tag.len()) = 0;
            buf
        };
        // SAFETY: context is this instance's live context.
        let remote = unsafe { (*slot.context).remote_context };
        let mut raw: c_int = 0;
        let peak = run_on_small_stack(self.options.flush_stack_size, || {
            // SAFETY: the ABI's flush signatures; the chunk and tag stay
            // valid for the call.
            raw = unsafe {
                match (flush_ctx, flush) {
                    (Some(f), _) => f(remote, chunk.ptr(), chunk.len(), tag_buf),
                    (None, Some(f)) => f(chunk.ptr(), chunk.len(), tag_buf),
                    (None, None) => unreachable!("checked above"),
                }
            };
        });
        // SAFETY: poison then free the tag copy, as a later reuse would.
        unsafe {
            std::ptr::write_bytes(tag_buf, 0x5A, tag.len());
            libc::free(tag_buf.cast());
        }
        drop(chunk);
        let stack_peak = peak.ok_or(HostError::Memory)?;
        let symbol = if flush_ctx.is_some() {
            sys::symbols::FLUSH_CTX
        } else {
            sys::symbols::FLUSH
        };
        self.record(symbol, Some(instance), None, Some(raw.into()));
        let code = match raw {
            sys::FLB_OK => FlushCode::Ok,
            sys::FLB_RETRY => FlushCode::Retry,
            _ => FlushCode::Error,
        };
        Ok(FlushReport {
            code,
            raw,
            stack_peak,
        })
    }

    /// Flushes `chunks` to one instance from several threads at once, as
    /// Fluent Bit does with `Workers > 0`; reports are in `chunks` order.
    pub fn flush_concurrently(
        &self,
        instance: usize,
        tag: &str,
        chunks: &[Vec<u8>],
    ) -> Vec<Result<FlushReport, HostError>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|c| s.spawn(move || self.flush(instance, tag, c)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("flush thread"))
                .collect()
        })
    }

    /// Exits every instance (pre-exit, then exit) and unloads the plugin, as
    /// Fluent Bit's shutdown does; `hot_reload` is
    /// `shutdown_by_hot_reloading`. Instances that never initialised get
    /// their exit too, with a NULL remote context, as in Fluent Bit.
    pub fn shutdown(&mut self, hot_reload: bool) {
        if self.exited {
            return;
        }
        self.exited = true;
        if self.registration == Registration::Registered {
            for i in 0..self.instances.len() {
                let context = self.instances[i].context;
                if let Some(pre_exit) = self.symbols.pre_exit {
                    let arg = c_int::from(hot_reload);
                    // SAFETY: FLBPluginOutputPreExit(int) per the ABI.
                    unsafe { pre_exit(arg) };
                    self.record(
                        sys::symbols::OUTPUT_PRE_EXIT,
                        Some(i),
                        Some(arg.into()),
                        None,
                    );
                }
                // SAFETY: context is the instance's live context.
                let remote = unsafe { (*context).remote_context };
                if let Some(exit_ctx) = self.symbols.exit_ctx {
                    // SAFETY: FLBPluginExitCtx(remote_context) per the ABI.
                    let ret = unsafe { exit_ctx(remote) };
                    self.record(sys::symbols::EXIT_CTX, Some(i), None, Some(ret.into()));
                } else if let Some(exit) = self.symbols.exit {
                    // SAFETY: FLBPluginExit() per the ABI.
                    let ret = unsafe { exit() };
                    self.record(sys::symbols::EXIT, Some(i), None, Some(ret.into()));
                }
                // SAFETY: our calloc'ed context, freed once.
                unsafe { libc::free(context.cast()) };
                self.instances[i].context = std::ptr::null_mut();
                self.instances[i].state = InstanceState::Exited;
            }
            if let Some(unregister) = self.symbols.unregister {
                // SAFETY: FLBPluginUnregister(def) per the ABI.
                unsafe { unregister(self.def) };
                self.record(sys::symbols::UNREGISTER, None, None, None);
            }
        }
        if !self.go.is_null() {
            // SAFETY: our malloc'ed struct and strdup'ed name.
            unsafe {
                libc::free((*self.go).head.name.cast());
                libc::free(self.go.cast());
            }
            self.go = std::ptr::null_mut();
        }
        for slot in &mut self.instances {
            if !slot.context.is_null() {
                // SAFETY: our calloc'ed context, not yet freed.
                unsafe { libc::free(slot.context.cast()) };
                slot.context = std::ptr::null_mut();
            }
        }
        self.description = std::ptr::null();
        if let Some(lib) = self.lib.take() {
            if let Err(e) = lib.close() {
                host_log(sys::FLB_LOG_ERROR, format!("dlclose failed: {e}"));
            }
        }
    }

    /// Removes and returns the log lines captured so far (plugin and host).
    pub fn take_logs(&self) -> Vec<LogLine> {
        api::take_logs()
    }

    /// The calls made into the plugin so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// An instance's state.
    pub fn state(&self, instance: usize) -> Option<InstanceState> {
        self.instances.get(instance).map(|s| s.state)
    }

    /// The property keys an instance looked up, in order.
    pub fn property_lookups(&self, instance: usize) -> Vec<String> {
        self.instances
            .get(instance)
            .map(|s| {
                s.host
                    .lookups
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            })
            .unwrap_or_default()
    }

    /// The path loaded.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ProxyHost {
    fn drop(&mut self) {
        self.shutdown(false);
        if !self.def.is_null() {
            // SAFETY: our calloc'ed definition.
            unsafe { libc::free(self.def.cast()) };
            self.def = std::ptr::null_mut();
        }
    }
}
