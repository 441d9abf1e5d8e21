/*
 * C parts of the proxy host in src/proxy that Rust cannot state:
 *
 * - harness_log_print: the host's variadic `log_print(level, file, line,
 *   fmt, ...)`. It formats with vsnprintf, exactly as a printf-style host
 *   does, and hands the result to a sink set by Rust.
 * - harness_run_on_stack: runs a function on a fresh stack of a given size
 *   with a PROT_NONE guard page below it (Fluent Bit runs flushes on a small
 *   coroutine stack; here an overflow faults instead of corrupting memory),
 *   painting the stack first so the peak use can be measured afterwards.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

typedef void (*harness_log_sink)(int level, const char *file, int line,
                                 const char *fmt, const char *message);

static harness_log_sink g_sink = NULL;

void harness_set_log_sink(harness_log_sink sink)
{
    g_sink = sink;
}

void harness_log_print(int level, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    int n;
    char *buf;

    if (fmt == NULL) {
        if (g_sink) {
            g_sink(level, file, line, NULL, "");
        }
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        n = 0;
    }
    buf = malloc((size_t)n + 1);
    if (buf == NULL) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(buf, (size_t)n + 1, fmt, ap);
    va_end(ap);
    if (g_sink) {
        g_sink(level, file, line, fmt, buf);
    }
    free(buf);
}

typedef void (*harness_stack_fn)(void *arg);

struct harness_run {
    harness_stack_fn fn;
    void *arg;
    ucontext_t caller;
    ucontext_t callee;
};

static __thread struct harness_run *current_run;

static void harness_trampoline(void)
{
    struct harness_run *run = current_run;
    run->fn(run->arg);
    /* returning resumes uc_link, the caller */
}

#define PAINT 0xA5

/*
 * Returns 0 on success (with *peak_used set), -1 if the stack could not be
 * set up. `fn` must not unwind or longjmp out.
 */
int harness_run_on_stack(size_t stack_size, harness_stack_fn fn, void *arg,
                         size_t *peak_used)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t size, untouched;
    char *region, *stack;
    struct harness_run run;

    if (page <= 0) {
        return -1;
    }
    size = (stack_size + (size_t)page - 1) / (size_t)page * (size_t)page;
    region = mmap(NULL, size + (size_t)page, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (region == MAP_FAILED) {
        return -1;
    }
    if (mprotect(region, (size_t)page, PROT_NONE) != 0) {
        munmap(region, size + (size_t)page);
        return -1;
    }
    stack = region + page;
    memset(stack, PAINT, size);

    run.fn = fn;
    run.arg = arg;
    if (getcontext(&run.callee) != 0) {
        munmap(region, size + (size_t)page);
        return -1;
    }
    run.callee.uc_stack.ss_sp = stack;
    run.callee.uc_stack.ss_size = size;
    run.callee.uc_link = &run.caller;
    makecontext(&run.callee, harness_trampoline, 0);

    current_run = &run;
    if (swapcontext(&run.caller, &run.callee) != 0) {
        current_run = NULL;
        munmap(region, size + (size_t)page);
        return -1;
    }
    current_run = NULL;

    untouched = 0;
    while (untouched < size && (unsigned char)stack[untouched] == PAINT) {
        untouched++;
    }
    if (peak_used) {
        *peak_used = size - untouched;
    }
    munmap(region, size + (size_t)page);
    return 0;
}
