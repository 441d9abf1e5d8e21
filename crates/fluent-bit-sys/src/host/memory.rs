//! Memory the host hands to plugins, laid out so misuse faults: chunks end
//! at a guard page, flushes run on a guarded small stack.

use std::ffi::c_void;
use std::panic::{self, AssertUnwindSafe};

extern "C" {
    fn harness_run_on_stack(
        stack_size: usize,
        f: extern "C" fn(*mut c_void),
        arg: *mut c_void,
        peak_used: *mut usize,
    ) -> i32;
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// A copy of a chunk whose last byte is right below a PROT_NONE page: a read
/// past the end faults. Unmapped on drop, so a kept pointer faults too.
pub(crate) struct GuardedBuf {
    region: *mut c_void,
    total: usize,
    data: *const u8,
    len: usize,
}

impl GuardedBuf {
    pub(crate) fn new(bytes: &[u8]) -> Option<GuardedBuf> {
        let page = page_size();
        let body = bytes.len().div_ceil(page).max(1) * page;
        let total = body + page;
        // SAFETY: anonymous private mapping, no address hint.
        let region = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if region == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: region..region+total is ours; the last page becomes the guard.
        let guard = unsafe { region.cast::<u8>().add(body) };
        // SAFETY: guard is page-aligned inside the mapping.
        if unsafe { libc::mprotect(guard.cast(), page, libc::PROT_NONE) } != 0 {
            // SAFETY: unmapping our own mapping.
            unsafe { libc::munmap(region, total) };
            return None;
        }
        // SAFETY: guard - len is inside the writable part; the copy fits.
        let data = unsafe { guard.sub(bytes.len()) };
        // SAFETY: non-overlapping, len bytes each.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len()) };
        Some(GuardedBuf {
            region,
            total,
            data,
            len: bytes.len(),
        })
    }

    pub(crate) fn ptr(&self) -> *const c_void {
        self.data.cast()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for GuardedBuf {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in new().
        unsafe { libc::munmap(self.region, self.total) };
    }
}

struct StackCall<'a> {
    f: &'a mut dyn FnMut(),
    panicked: bool,
}

extern "C" fn stack_trampoline(arg: *mut c_void) {
    // SAFETY: arg is the StackCall passed by run_on_small_stack, alive for
    // the whole call.
    let call = unsafe { &mut *arg.cast::<StackCall<'_>>() };
    // Never unwind into the C shim's context switch.
    if panic::catch_unwind(AssertUnwindSafe(|| (call.f)())).is_err() {
        call.panicked = true;
    }
}

/// Runs `f` on a fresh stack of `stack_size` bytes with a guard page below
/// it; returns the peak stack use in bytes, or `None` if the stack could not
/// be set up. A panic in `f` (a host-side bug) is re-raised here.
pub(crate) fn run_on_small_stack(stack_size: usize, mut f: impl FnMut()) -> Option<usize> {
    let mut call = StackCall {
        f: &mut f,
        panicked: false,
    };
    let mut peak = 0usize;
    // SAFETY: the trampoline and its argument stay valid during the call,
    // and the trampoline never unwinds.
    let rc = unsafe {
        harness_run_on_stack(
            stack_size,
            stack_trampoline,
            (&mut call as *mut StackCall<'_>).cast(),
            &mut peak,
        )
    };
    if call.panicked {
        panic!("host-side panic while running on the flush stack");
    }
    (rc == 0).then_some(peak)
}
