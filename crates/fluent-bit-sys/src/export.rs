//! The export shell behind [`export_proxy_output!`](crate::export_proxy_output)
//! (and `fluent-bit-plugin`'s `output_plugin!`, which expands to it): it turns
//! the host's raw calls into calls on one boxed [`ProxyOutput`] value per
//! instance, catches every panic, and provides the `log` backend. All the FFI
//! `unsafe` of a plugin lives here, in the sys crate; the safe layer above
//! (`fluent-bit-plugin`) has none.
//!
//! Invariants:
//! - `remote_context` of an initialised instance points to a leaked
//!   `Box<InstanceBox<P>>`, freed exactly once, in `exit_ctx`;
//! - `LIVE` lists the initialised, not yet exited instances in init order;
//! - the host's api and o_ins pointers are copied at init into an
//!   `Arc<HostRef>` and used only while that instance is alive (the `alive`
//!   flag is cleared when its exit returns);
//! - every entry point runs the plugin under `guard`, which never unwinds.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};

use crate as sys;

/// What the shell calls for one output instance, in safe types. `fluent-bit-plugin`
/// implements it for every `OutputPlugin`; plugins do not implement it directly.
pub trait ProxyOutput: Sized + Send + Sync + 'static {
    /// The name used in `[OUTPUT] Name` (the host copies it).
    const NAME: &'static CStr;
    /// A one-line description (the host keeps the pointer).
    const DESCRIPTION: &'static CStr;
    /// Creates the instance; `property` is the host's `output_get_property`.
    fn init(
        property: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>>;
    /// One chunk for `tag`; returns FLB_OK, FLB_RETRY or FLB_ERROR. May run concurrently.
    fn flush(&self, tag: &str, data: &[u8]) -> c_int;
    /// After every instance initialised.
    fn pre_run(&self, enable_hot_reload: bool);
    /// Right before `exit`, when the host announced it.
    fn pre_exit(&self, hot_reload: bool);
    /// The instance's last call.
    fn exit(self, hot_reload: bool);
}

/// What the shell keeps about one instance's host side.
pub(crate) struct HostRef {
    api: *const sys::flb_api,
    o_ins: *mut c_void,
    alive: AtomicBool,
    label: String,
}

// SAFETY: the api table is one static-for-the-plugin's-life table of C
// function pointers; its log functions are called by Fluent Bit from several
// threads itself. o_ins is only passed back to the host as an opaque handle.
// Both are used only while `alive` is set (the instance exists).
unsafe impl Send for HostRef {}
// SAFETY: see Send; HostRef has no interior mutability besides the atomic.
unsafe impl Sync for HostRef {}

impl HostRef {
    fn api(&self) -> Option<&sys::flb_api> {
        if !self.alive.load(Ordering::Acquire) || self.api.is_null() {
            return None;
        }
        // SAFETY: non-null, and the host keeps the api table alive for as
        // long as any instance of the plugin exists (alive is set).
        Some(unsafe { &*self.api })
    }

    /// `output_get_property(key, o_ins)` as an owned string.
    fn property(&self, key: &str) -> Option<String> {
        let api = self.api()?;
        let get = api.output_get_property?;
        let key = CString::new(key).ok()?;
        // SAFETY: key is NUL-terminated; o_ins is the instance's handle given
        // by the host; the result is NULL or a NUL-terminated string owned by
        // the host, copied before returning.
        unsafe {
            let v = get(key.as_ptr(), self.o_ins);
            if v.is_null() {
                None
            } else {
                Some(CStr::from_ptr(v).to_string_lossy().into_owned())
            }
        }
    }

    /// `output_log_check(o_ins, level)`; `None` when the instance is gone.
    fn log_check(&self, level: c_int) -> Option<bool> {
        let api = self.api()?;
        match api.output_log_check {
            // SAFETY: o_ins is this instance's handle; the call reads its
            // log level.
            Some(check) => Some(unsafe { check(self.o_ins, level) } != 0),
            None => Some(level <= sys::FLB_LOG_INFO),
        }
    }

    /// `log_print(level, file, line, "%s", msg)`; false when the instance is gone.
    fn log_print(&self, level: c_int, file: &CStr, line: c_int, msg: &CStr) -> bool {
        let Some(print) = self.api().and_then(|a| a.log_print) else {
            return false;
        };
        // SAFETY: all strings are NUL-terminated and outlive the call; the
        // format is the literal "%s" with exactly one string argument.
        unsafe { print(level, file.as_ptr(), line, c"%s".as_ptr(), msg.as_ptr()) };
        true
    }
}

/// A handle on one plugin instance, for logging from threads the plugin
/// starts. Clone it in `init` with [`Instance::current`], move it into the
/// thread, and hold [`Instance::enter`]'s guard there.
#[derive(Clone)]
pub struct Instance {
    host: Arc<HostRef>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("label", &self.host.label)
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl Instance {
    /// The instance the current call (init, flush, pre-run, pre-exit, exit)
    /// or the current [`LogScope`] is for.
    pub fn current() -> Option<Instance> {
        CURRENT
            .try_with(|c| c.borrow().clone())
            .ok()
            .flatten()
            .map(|host| Instance { host })
    }

    /// Routes this thread's `log` calls to this instance until the guard drops.
    pub fn enter(&self) -> LogScope {
        LogScope::enter(self.host.clone())
    }

    /// The label used in log lines, `<name>#<n>` in init order.
    pub fn label(&self) -> &str {
        &self.host.label
    }

    /// Whether the instance has not yet exited.
    pub fn is_alive(&self) -> bool {
        self.host.alive.load(Ordering::Acquire)
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<HostRef>>> = const { RefCell::new(None) };
    static IN_GUARD: Cell<u32> = const { Cell::new(0) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Routes the thread's `log` calls to one instance while alive.
#[must_use = "logging is routed only while the scope is held"]
pub struct LogScope {
    prev: Option<Arc<HostRef>>,
    _not_send: PhantomData<*const ()>,
}

impl LogScope {
    fn enter(host: Arc<HostRef>) -> LogScope {
        let prev = CURRENT.try_with(|c| c.replace(Some(host))).ok().flatten();
        LogScope {
            prev,
            _not_send: PhantomData,
        }
    }
}

impl Drop for LogScope {
    fn drop(&mut self) {
        let prev = self.prev.take();
        let _ = CURRENT.try_with(|c| *c.borrow_mut() = prev);
    }
}

struct LiveEntry {
    addr: usize,
    host: Arc<HostRef>,
    pre_run_done: bool,
}

/// Initialised, not yet exited instances, in init order.
static LIVE: Mutex<Vec<LiveEntry>> = Mutex::new(Vec::new());
/// The reason announced by the latest FLBPluginOutputPreExit, not yet consumed.
/// (`true`: shutdown by hot reload.)
static PENDING_PRE_EXIT: Mutex<Option<bool>> = Mutex::new(None);
/// Counter for instance labels.
static NEXT_INDEX: AtomicUsize = AtomicUsize::new(0);
/// The plugin's name for log lines without an instance.
static PLUGIN_NAME: Mutex<String> = Mutex::new(String::new());

fn live() -> std::sync::MutexGuard<'static, Vec<LiveEntry>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// One instance: what `remote_context` points to.
struct InstanceBox<P> {
    host: Arc<HostRef>,
    context: *mut sys::flb_plugin_proxy_context,
    plugin: P,
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let inside = IN_GUARD.try_with(|d| d.get() > 0).unwrap_or(false);
            if !inside {
                prev(info);
                return;
            }
            let mut msg = panic_message(info.payload());
            if let Some(loc) = info.location() {
                msg = format!("{msg} (at {}:{})", loc.file(), loc.line());
            }
            let _ = LAST_PANIC.try_with(|p| *p.borrow_mut() = Some(msg));
        }));
    });
}

/// Runs `f`, turning a panic into an error log and `on_panic`. Never unwinds.
fn guard<R>(what: &str, on_panic: R, f: impl FnOnce() -> R) -> R {
    let _ = IN_GUARD.try_with(|d| d.set(d.get() + 1));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    let _ = IN_GUARD.try_with(|d| d.set(d.get().saturating_sub(1)));
    match result {
        Ok(v) => v,
        Err(payload) => {
            let msg = LAST_PANIC
                .try_with(|p| p.borrow_mut().take())
                .ok()
                .flatten()
                .unwrap_or_else(|| panic_message(&*payload));
            // Dropping a payload can itself panic; never let that escape.
            if let Err(inner) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
                std::mem::forget(inner);
            }
            let _ = panic::catch_unwind(|| log::error!("panic in {what}: {msg}"));
            on_panic
        }
    }
}

// ---------------------------------------------------------------- logging

struct HostLogger;

static HOST_LOGGER: HostLogger = HostLogger;

fn flb_level(level: log::Level) -> c_int {
    match level {
        log::Level::Error => sys::FLB_LOG_ERROR,
        log::Level::Warn => sys::FLB_LOG_WARN,
        log::Level::Info => sys::FLB_LOG_INFO,
        log::Level::Debug => sys::FLB_LOG_DEBUG,
        log::Level::Trace => sys::FLB_LOG_TRACE,
    }
}

/// The instance a log call goes to: the thread's scope, else the first live
/// instance (for plugin threads that did not enter a scope).
fn log_target() -> Option<Arc<HostRef>> {
    let current = CURRENT.try_with(|c| c.borrow().clone()).ok().flatten();
    current.or_else(|| live().first().map(|e| e.host.clone()))
}

fn to_cstring(s: String) -> CString {
    CString::new(s).unwrap_or_else(|e| {
        let cleaned: Vec<u8> = e.into_vec().into_iter().filter(|b| *b != 0).collect();
        CString::new(cleaned).unwrap_or_default()
    })
}

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        let level = flb_level(metadata.level());
        match log_target() {
            Some(h) => h.log_check(level).unwrap_or(level <= sys::FLB_LOG_WARN),
            None => level <= sys::FLB_LOG_WARN,
        }
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = flb_level(record.level());
        let target = log_target();
        if let Some(h) = target.as_ref() {
            match h.log_check(level) {
                Some(false) => return,
                Some(true) => {
                    let msg = to_cstring(format!("[{}] {}", h.label, record.args()));
                    let file = to_cstring(record.file().unwrap_or("").to_string());
                    let line = record.line().map_or(0, |l| l as c_int);
                    if h.log_print(level, &file, line, &msg) {
                        return;
                    }
                }
                None => {}
            }
        }
        // No live instance: Fluent Bit's log_print would write to stderr from
        // this thread anyway; do so directly for errors and warnings.
        if level <= sys::FLB_LOG_WARN {
            let name = PLUGIN_NAME.lock().map(|n| n.clone()).unwrap_or_default();
            eprintln!("[{name}] [{}] {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

fn install_logger(name: &str) {
    if let Ok(mut n) = PLUGIN_NAME.lock() {
        *n = name.to_string();
    }
    // Fails only if a logger is already set (a second registration, or the
    // plugin installed its own): keep whichever is there.
    if log::set_logger(&HOST_LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}

// ------------------------------------------------------------ entry points

/// `FLBPluginRegister`: fills the definition.
///
/// # Safety
/// `def` is NULL or points to a writable `flb_plugin_proxy_def`.
pub unsafe fn register<P: ProxyOutput>(def: *mut sys::flb_plugin_proxy_def) -> c_int {
    install_panic_hook();
    guard("FLBPluginRegister", -1, || {
        install_logger(&P::NAME.to_string_lossy());
        if def.is_null() {
            log::error!("FLBPluginRegister called with a NULL definition");
            return -1;
        }
        // SAFETY: non-null and writable per this function's contract.
        let def = unsafe { &mut *def };
        def.type_ = sys::FLB_PROXY_OUTPUT_PLUGIN;
        def.proxy = sys::FLB_PROXY_GOLANG;
        def.flags = 0;
        // The host strdup()s the name and keeps the description pointer: both
        // are 'static C strings, never written through.
        def.name = P::NAME.as_ptr().cast_mut();
        def.description = P::DESCRIPTION.as_ptr().cast_mut();
        def.event_type = sys::FLB_PROXY_EVENT_TYPE_LOGS;
        def.config_map = std::ptr::null_mut();
        0
    })
}

/// `FLBPluginInit`: creates one instance.
///
/// # Safety
/// `plugin` is NULL or points to the host's `flbgo_output_plugin` whose api,
/// o_ins and context are set for the instance being initialised.
pub unsafe fn init<P: ProxyOutput>(plugin: *mut c_void) -> c_int {
    install_panic_hook();
    if plugin.is_null() {
        guard("FLBPluginInit", (), || {
            log::error!("FLBPluginInit called with NULL")
        });
        return -1;
    }
    // SAFETY: non-null and valid per the contract; the struct is shared by
    // all instances and rewritten before each init, so copy the fields now.
    let shared: sys::flbgo_output_plugin =
        unsafe { std::ptr::read(plugin.cast::<sys::flbgo_output_plugin>()) };
    let index = NEXT_INDEX.fetch_add(1, Ordering::Relaxed);
    let host = Arc::new(HostRef {
        api: shared.api.cast::<sys::flb_api>().cast_const(),
        o_ins: shared.o_ins,
        alive: AtomicBool::new(!shared.api.is_null()),
        label: format!("{}#{index}", P::NAME.to_string_lossy()),
    });
    let _scope = LogScope::enter(host.clone());
    if shared.api.is_null() || shared.context.is_null() {
        guard("FLBPluginInit", (), || {
            log::error!("FLBPluginInit: the host passed a NULL api or context")
        });
        return -1;
    }
    let created = guard("FLBPluginInit", None, || {
        match P::init(&|key: &str| host.property(key)) {
            Ok(p) => Some(p),
            Err(e) => {
                log::error!("initialisation failed: {e}");
                None
            }
        }
    });
    let Some(plugin) = created else {
        host.alive.store(false, Ordering::Release);
        return -1;
    };
    let boxed = Box::into_raw(Box::new(InstanceBox {
        host: host.clone(),
        context: shared.context,
        plugin,
    }));
    // SAFETY: context is the instance's own flb_plugin_proxy_context (checked
    // non-null), valid until its exit.
    unsafe { (*shared.context).remote_context = boxed.cast::<c_void>() };
    live().push(LiveEntry {
        addr: boxed as usize,
        host,
        pre_run_done: false,
    });
    sys::FLB_OK
}

/// `FLBPluginFlushCtx`: hands one chunk to the instance.
///
/// # Safety
/// `remote_ctx` is NULL or a pointer stored by [`init`] and not yet passed
/// to [`exit_ctx`]; `data` points to `size` readable bytes (or `size` is 0);
/// `tag` is NULL or NUL-terminated. All stay valid during the call.
pub unsafe fn flush_ctx<P: ProxyOutput>(
    remote_ctx: *mut c_void,
    data: *const c_void,
    size: usize,
    tag: *mut c_char,
) -> c_int {
    if remote_ctx.is_null() {
        guard("FLBPluginFlushCtx", (), || {
            log::error!("flush for an instance that was not initialised: chunk dropped")
        });
        return sys::FLB_ERROR;
    }
    // SAFETY: per the contract remote_ctx is a live InstanceBox<P>; flush only
    // takes a shared reference (P: Sync), so concurrent flushes are fine.
    let inst = unsafe { &*remote_ctx.cast::<InstanceBox<P>>() };
    let _scope = LogScope::enter(inst.host.clone());
    let tag: Cow<'_, str> = if tag.is_null() {
        Cow::Borrowed("")
    } else {
        // SAFETY: NUL-terminated per the contract, valid during the call.
        unsafe { CStr::from_ptr(tag) }.to_string_lossy()
    };
    let bytes: &[u8] = if size == 0 {
        &[]
    } else if data.is_null() {
        guard("FLBPluginFlushCtx", (), || {
            log::error!("flush with a NULL chunk of {size} bytes: chunk dropped")
        });
        return sys::FLB_ERROR;
    } else {
        // SAFETY: data points to size readable bytes, valid during the call.
        unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size) }
    };
    guard("flush", sys::FLB_ERROR, || inst.plugin.flush(&tag, bytes))
}

/// `FLBPluginOutputPreRun`: delivered to the first instance not yet pre-run.
pub fn output_pre_run<P: ProxyOutput>(enable_hot_reload: c_int) -> c_int {
    install_panic_hook();
    let picked = {
        let mut live = live();
        live.iter_mut().find(|e| !e.pre_run_done).map(|e| {
            e.pre_run_done = true;
            (e.addr, e.host.clone())
        })
    };
    let Some((addr, host)) = picked else {
        guard("FLBPluginOutputPreRun", (), || {
            log::debug!("pre-run with no instance waiting for it")
        });
        return sys::FLB_OK;
    };
    let _scope = LogScope::enter(host);
    // SAFETY: addr is a live InstanceBox<P> (entries leave LIVE before their
    // box is freed in exit_ctx, and the host calls pre-run and exit on the
    // same thread, never concurrently).
    let inst = unsafe { &*(addr as *const InstanceBox<P>) };
    guard("pre_run", (), || {
        inst.plugin.pre_run(enable_hot_reload != 0)
    });
    sys::FLB_OK
}

/// `FLBPluginOutputPreExit`: remembered for the `exit_ctx` that follows.
pub fn output_pre_exit<P: ProxyOutput>(shutdown_by_hot_reloading: c_int) {
    if let Ok(mut p) = PENDING_PRE_EXIT.lock() {
        *p = Some(shutdown_by_hot_reloading != 0);
    }
}

/// `FLBPluginExitCtx`: pre-exit (if announced), exit, free the instance.
///
/// # Safety
/// `remote_ctx` is NULL or a pointer stored by [`init`], passed here once,
/// with no flush running for it.
pub unsafe fn exit_ctx<P: ProxyOutput>(remote_ctx: *mut c_void) -> c_int {
    install_panic_hook();
    let announced = PENDING_PRE_EXIT.lock().ok().and_then(|mut p| p.take());
    if remote_ctx.is_null() {
        // An instance whose init never ran or failed: nothing to release.
        return sys::FLB_OK;
    }
    let addr = remote_ctx as usize;
    live().retain(|e| e.addr != addr);
    // SAFETY: remote_ctx came from Box::into_raw in init and is passed here
    // once; it has just left LIVE, so nothing else can reach it.
    let inst = unsafe { Box::from_raw(remote_ctx.cast::<InstanceBox<P>>()) };
    let InstanceBox {
        host,
        context,
        plugin,
    } = *inst;
    // SAFETY: context is the instance's flb_plugin_proxy_context, which the
    // host frees only after this call returns; clearing it makes a repeated
    // exit call harmless.
    unsafe {
        if (*context).remote_context == remote_ctx {
            (*context).remote_context = std::ptr::null_mut();
        }
    }
    let reason = announced.unwrap_or(false);
    {
        let _scope = LogScope::enter(host.clone());
        if let Some(reason) = announced {
            guard("pre_exit", (), || plugin.pre_exit(reason));
        }
        guard("exit", (), move || plugin.exit(reason));
    }
    host.alive.store(false, Ordering::Release);
    sys::FLB_OK
}

/// Exports the proxy ABI symbols (`FLBPluginRegister`, `FLBPluginInit`,
/// `FLBPluginFlushCtx`, `FLBPluginExitCtx`, `FLBPluginOutputPreRun`,
/// `FLBPluginOutputPreExit`) for `$plugin`, a [`ProxyOutput`]. Use once, in a
/// `cdylib`; plugin authors use `fluent_bit_plugin::output_plugin!` instead.
#[macro_export]
macro_rules! export_proxy_output {
    ($plugin:ty) => {
        /// Fluent Bit proxy ABI: registration.
        ///
        /// # Safety
        /// Called by Fluent Bit with a valid, writable definition.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn FLBPluginRegister(
            def: *mut $crate::flb_plugin_proxy_def,
        ) -> ::std::ffi::c_int {
            // SAFETY: the host passes a calloc'ed, writable definition (or
            // NULL, which the shell rejects).
            unsafe { $crate::export::register::<$plugin>(def) }
        }

        /// Fluent Bit proxy ABI: instance initialisation.
        ///
        /// # Safety
        /// Called by Fluent Bit with its `flbgo_output_plugin` struct.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn FLBPluginInit(
            plugin: *mut ::std::ffi::c_void,
        ) -> ::std::ffi::c_int {
            // SAFETY: the host passes its flbgo_output_plugin with api, o_ins
            // and context set for the instance being initialised.
            unsafe { $crate::export::init::<$plugin>(plugin) }
        }

        /// Fluent Bit proxy ABI: flush with the instance context.
        ///
        /// # Safety
        /// Called by Fluent Bit with the instance's remote context, a chunk
        /// of `size` bytes and a NUL-terminated tag.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn FLBPluginFlushCtx(
            remote_ctx: *mut ::std::ffi::c_void,
            data: *const ::std::ffi::c_void,
            size: usize,
            tag: *mut ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            // SAFETY: remote_ctx is what init stored (or NULL), data points
            // to size readable bytes and tag is NUL-terminated, per the ABI.
            unsafe { $crate::export::flush_ctx::<$plugin>(remote_ctx, data, size, tag) }
        }

        /// Fluent Bit proxy ABI: instance exit.
        ///
        /// # Safety
        /// Called by Fluent Bit once per instance with its remote context.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn FLBPluginExitCtx(
            remote_ctx: *mut ::std::ffi::c_void,
        ) -> ::std::ffi::c_int {
            // SAFETY: remote_ctx is what init stored (or NULL); the host calls
            // exit once per instance, after its last flush.
            unsafe { $crate::export::exit_ctx::<$plugin>(remote_ctx) }
        }

        /// Fluent Bit proxy ABI: called once per instance before the first flush.
        #[unsafe(no_mangle)]
        pub extern "C" fn FLBPluginOutputPreRun(
            enable_hot_reload: ::std::ffi::c_int,
        ) -> ::std::ffi::c_int {
            $crate::export::output_pre_run::<$plugin>(enable_hot_reload)
        }

        /// Fluent Bit proxy ABI: called right before each instance's exit.
        #[unsafe(no_mangle)]
        pub extern "C" fn FLBPluginOutputPreExit(shutdown_by_hot_reloading: ::std::ffi::c_int) {
            $crate::export::output_pre_exit::<$plugin>(shutdown_by_hot_reloading)
        }
    };
}
