/*
 * flb_proxy_abi.h: the C ABI between Fluent Bit's plugin proxy and an external
 * output plugin loaded with `fluent-bit -e plugin.so`.
 *
 * Written for lockstep from the facts in shared/facts/fluent-bit-proxy-abi.md
 * (Fluent Bit 5.1.x, x86_64 / aarch64 LP64). It states only what a plugin and a
 * host need to agree on; it is not a copy of any Fluent Bit header.
 *
 * This header is the single source of truth for crates/fluent-bit-sys: the Rust
 * bindings in src/bindings.rs are generated from it by bindgen
 * (`cargo run -p fluent-bit-sys --example regen`), and csrc/layout_check.c
 * reports the sizes and offsets a C compiler sees for it.
 */
#ifndef LOCKSTEP_FLB_PROXY_ABI_H
#define LOCKSTEP_FLB_PROXY_ABI_H

#include <stddef.h>

/* Plugin types for flb_plugin_proxy_def.type */
#define FLB_PROXY_INPUT_PLUGIN  1
#define FLB_PROXY_OUTPUT_PLUGIN 2
#define FLB_PROXY_CUSTOM_PLUGIN 3

/* flb_plugin_proxy_def.proxy: the "golang" proxy, the only one that exists */
#define FLB_PROXY_GOLANG 11

/* flb_plugin_proxy_def.event_type: 0 means logs */
#define FLB_PROXY_EVENT_TYPE_LOGS 0

/* Flush return codes; any other value is treated as FLB_ERROR by the host */
#define FLB_ERROR 0
#define FLB_OK    1
#define FLB_RETRY 2

/* Log levels for flb_api.log_print and flb_api.output_log_check */
#define FLB_LOG_OFF   0
#define FLB_LOG_ERROR 1
#define FLB_LOG_WARN  2
#define FLB_LOG_INFO  3
#define FLB_LOG_DEBUG 4
#define FLB_LOG_TRACE 5

/* Filled by FLBPluginRegister. The host strdup()s `name` but keeps the
 * `description` pointer as is, so it must stay valid (static). */
struct flb_plugin_proxy_def {
    int type;
    int proxy;
    int flags;
    char *name;
    char *description;
    int event_type;
    void *config_map;
};

/* One per [OUTPUT] instance, calloc()ed by the host. The plugin stores its
 * per-instance state in remote_context during FLBPluginInit; FlushCtx and
 * ExitCtx receive that pointer back. `proxy` belongs to the host. */
struct flb_plugin_proxy_context {
    void *remote_context;
    void *proxy;
};

/* What FLBPluginInit receives. ONE per loaded .so, not per instance: the host
 * overwrites api, o_ins and context before each instance's FLBPluginInit.
 * The host's own callback pointers follow these four fields; a plugin must not
 * touch them, so they are not stated here. */
struct flbgo_output_plugin {
    char *name;
    void *api;   /* struct flb_api * */
    void *o_ins; /* the output instance: pass it back to api calls */
    struct flb_plugin_proxy_context *context;
};

/* The host API table (one per loaded .so). */
struct flb_api {
    const char *(*output_get_property)(const char *key, void *o_ins);
    const char *(*input_get_property)(const char *key, void *i_ins);
    void *(*output_get_cmt_instance)(void *o_ins);
    void *(*input_get_cmt_instance)(void *i_ins);
    void (*log_print)(int level, const char *file, int line, const char *fmt, ...);
    int (*input_log_check)(void *i_ins, int level);
    int (*output_log_check)(void *o_ins, int level);
    const char *(*custom_get_property)(const char *key, void *c_ins);
    int (*custom_log_check)(void *c_ins, int level);
};

/* Signatures of the symbols the host looks up with dlsym, as function pointer
 * types (a plugin defines them; a host calls them). */
typedef int (*flb_plugin_pre_register_fn)(int hot_reloading);
typedef int (*flb_plugin_register_fn)(struct flb_plugin_proxy_def *def);
typedef int (*flb_plugin_init_fn)(void *plugin);
typedef int (*flb_plugin_flush_ctx_fn)(void *remote_ctx, const void *data, size_t size, char *tag);
typedef int (*flb_plugin_flush_fn)(const void *data, size_t size, const char *tag);
typedef int (*flb_plugin_exit_ctx_fn)(void *remote_ctx);
typedef int (*flb_plugin_exit_fn)(void);
typedef int (*flb_plugin_output_pre_run_fn)(int enable_hot_reload);
typedef void (*flb_plugin_output_pre_exit_fn)(int shutdown_by_hot_reloading);
typedef void (*flb_plugin_unregister_fn)(struct flb_plugin_proxy_def *def);

#endif /* LOCKSTEP_FLB_PROXY_ABI_H */
