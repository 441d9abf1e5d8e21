//! The `struct flb_api` table the host hands to plugins, and log capture.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;

use crate as sys;

use super::host::InstanceHost;

/// Who wrote a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    /// The plugin, through `log_print`.
    Plugin,
    /// The host itself (what Fluent Bit would log on its own).
    Host,
}

/// One captured log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// 1 error, 2 warn, 3 info, 4 debug, 5 trace.
    pub level: i32,
    /// The `file` argument.
    pub file: String,
    /// The `line` argument.
    pub line: i32,
    /// The format string the plugin passed (`None` for host lines or NULL).
    pub format: Option<String>,
    /// The formatted message.
    pub message: String,
    /// Who wrote it.
    pub source: LogSource,
}

static LOGS: Mutex<Vec<LogLine>> = Mutex::new(Vec::new());

fn push(line: LogLine) {
    LOGS.lock().unwrap_or_else(|e| e.into_inner()).push(line);
}

/// Removes and returns all captured lines.
pub(crate) fn take_logs() -> Vec<LogLine> {
    std::mem::take(&mut *LOGS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// A line the host itself logs.
pub(crate) fn host_log(level: i32, message: String) {
    push(LogLine {
        level,
        file: "proxy-host".into(),
        line: 0,
        format: None,
        message,
        source: LogSource::Host,
    });
}

fn lossy(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        // SAFETY: non-null pointers given to log_print are NUL-terminated
        // strings valid for the call (the C shim's buffer or the plugin's).
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

extern "C" fn log_sink(
    level: c_int,
    file: *const c_char,
    line: c_int,
    fmt: *const c_char,
    message: *const c_char,
) {
    let _ = panic::catch_unwind(AssertUnwindSafe(|| {
        push(LogLine {
            level,
            file: lossy(file).unwrap_or_default(),
            line,
            format: lossy(fmt),
            message: lossy(message).unwrap_or_default(),
            source: LogSource::Plugin,
        })
    }));
}

type Sink = extern "C" fn(c_int, *const c_char, c_int, *const c_char, *const c_char);

extern "C" {
    fn harness_set_log_sink(sink: Option<Sink>);
    fn harness_log_print(level: c_int, file: *const c_char, line: c_int, fmt: *const c_char, ...);
}

/// The instance behind an `o_ins` the host handed out.
///
/// # Safety
/// `o_ins` is NULL or a pointer to a live `InstanceHost` from this host.
unsafe fn instance<'a>(o_ins: *mut c_void) -> Option<&'a InstanceHost> {
    // SAFETY: per the contract.
    unsafe { o_ins.cast::<InstanceHost>().as_ref() }
}

unsafe extern "C" fn output_get_property(key: *const c_char, o_ins: *mut c_void) -> *const c_char {
    panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: o_ins is what the host put in the shared plugin struct;
        // the host keeps every InstanceHost alive until it is dropped.
        let Some(ins) = (unsafe { instance(o_ins) }) else {
            host_log(1, "output_get_property called with a NULL instance".into());
            return std::ptr::null();
        };
        let Some(key) = lossy(key) else {
            return std::ptr::null();
        };
        ins.record_property_lookup(&key);
        ins.property(&key).map_or(std::ptr::null(), |v| v.as_ptr())
    }))
    .unwrap_or(std::ptr::null())
}

unsafe extern "C" fn output_log_check(o_ins: *mut c_void, level: c_int) -> c_int {
    panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as in output_get_property.
        match unsafe { instance(o_ins) } {
            Some(ins) => c_int::from(ins.log_level() >= level),
            None => {
                host_log(1, "output_log_check called with a NULL instance".into());
                0
            }
        }
    }))
    .unwrap_or(0)
}

unsafe extern "C" fn misuse_get_property(_key: *const c_char, _ins: *mut c_void) -> *const c_char {
    host_log(
        1,
        "an output plugin called an input/custom property getter".into(),
    );
    std::ptr::null()
}

unsafe extern "C" fn misuse_log_check(_ins: *mut c_void, _level: c_int) -> c_int {
    host_log(
        1,
        "an output plugin called an input/custom log check".into(),
    );
    0
}

unsafe extern "C" fn no_cmt(_ins: *mut c_void) -> *mut c_void {
    std::ptr::null_mut()
}

/// A fresh api table; installs the log sink.
pub(crate) fn new_api() -> Box<sys::flb_api> {
    // SAFETY: sets a plain function pointer in the C shim.
    unsafe { harness_set_log_sink(Some(log_sink)) };
    Box::new(sys::flb_api {
        output_get_property: Some(output_get_property),
        input_get_property: Some(misuse_get_property),
        output_get_cmt_instance: Some(no_cmt),
        input_get_cmt_instance: Some(no_cmt),
        log_print: Some(harness_log_print),
        input_log_check: Some(misuse_log_check),
        output_log_check: Some(output_log_check),
        custom_get_property: Some(misuse_get_property),
        custom_log_check: Some(misuse_log_check),
    })
}
