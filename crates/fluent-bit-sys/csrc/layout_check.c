/*
 * Reports what a C compiler sees for include/flb_proxy_abi.h: sizes,
 * alignments and field offsets of every struct, and the value of every
 * constant. The Rust test in src/lib.rs (layout_check) walks this table and
 * compares each entry with what Rust sees for the generated bindings.
 */
#include <stddef.h>
#include "flb_proxy_abi.h"

struct flb_sys_layout_entry {
    const char *name;
    size_t value;
};

#define SIZE(T) {#T ".size", sizeof(struct T)}, {#T ".align", _Alignof(struct T)}
#define OFF(T, F) {#T "." #F, offsetof(struct T, F)}
#define CONST(C) {#C, (size_t)(C)}

static const struct flb_sys_layout_entry table[] = {
    SIZE(flb_plugin_proxy_def),
    OFF(flb_plugin_proxy_def, type),
    OFF(flb_plugin_proxy_def, proxy),
    OFF(flb_plugin_proxy_def, flags),
    OFF(flb_plugin_proxy_def, name),
    OFF(flb_plugin_proxy_def, description),
    OFF(flb_plugin_proxy_def, event_type),
    OFF(flb_plugin_proxy_def, config_map),

    SIZE(flb_plugin_proxy_context),
    OFF(flb_plugin_proxy_context, remote_context),
    OFF(flb_plugin_proxy_context, proxy),

    SIZE(flbgo_output_plugin),
    OFF(flbgo_output_plugin, name),
    OFF(flbgo_output_plugin, api),
    OFF(flbgo_output_plugin, o_ins),
    OFF(flbgo_output_plugin, context),

    SIZE(flb_api),
    OFF(flb_api, output_get_property),
    OFF(flb_api, input_get_property),
    OFF(flb_api, output_get_cmt_instance),
    OFF(flb_api, input_get_cmt_instance),
    OFF(flb_api, log_print),
    OFF(flb_api, input_log_check),
    OFF(flb_api, output_log_check),
    OFF(flb_api, custom_get_property),
    OFF(flb_api, custom_log_check),

    CONST(FLB_PROXY_INPUT_PLUGIN),
    CONST(FLB_PROXY_OUTPUT_PLUGIN),
    CONST(FLB_PROXY_CUSTOM_PLUGIN),
    CONST(FLB_PROXY_GOLANG),
    CONST(FLB_PROXY_EVENT_TYPE_LOGS),
    CONST(FLB_ERROR),
    CONST(FLB_OK),
    CONST(FLB_RETRY),
    CONST(FLB_LOG_OFF),
    CONST(FLB_LOG_ERROR),
    CONST(FLB_LOG_WARN),
    CONST(FLB_LOG_INFO),
    CONST(FLB_LOG_DEBUG),
    CONST(FLB_LOG_TRACE),

    {"size_t.size", sizeof(size_t)},
    {"int.size", sizeof(int)},
    {"pointer.size", sizeof(void *)},
    {"function_pointer.size", sizeof(flb_plugin_flush_ctx_fn)},
};

size_t flb_sys_layout_count(void)
{
    return sizeof(table) / sizeof(table[0]);
}

const char *flb_sys_layout_name(size_t i)
{
    return i < flb_sys_layout_count() ? table[i].name : NULL;
}

size_t flb_sys_layout_value(size_t i)
{
    return i < flb_sys_layout_count() ? table[i].value : (size_t)-1;
}
