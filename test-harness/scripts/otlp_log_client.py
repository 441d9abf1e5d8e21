#!/usr/bin/env python3
"""A real OTLP/HTTP log sender for the emulated `opentelemetry` input's tests: the
OpenTelemetry Python SDK (opentelemetry-sdk, opentelemetry-exporter-otlp-proto-http 1.45.2,
from PyPI) emitting a fixed list of log records through LoggerProvider,
BatchLogRecordProcessor and OTLPLogExporter, with every field set explicitly
(Logger.emit, not the logging bridge).

usage: otlp_log_client.py ENDPOINT [--gzip] [--resource K=V] [--t0 NS]

ENDPOINT is used verbatim (it must end in /v1/logs). Prints `export SUCCESS` or
`export FAILURE` (the exporter's own verdict on the receiver's answers) and exits 0 or 1;
nothing else goes to stdout.

The records, resource and scope below are what the Rust test
(test-harness/tests/otlp_logs_input.rs) expects: change both together.
"""
import sys

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

RESOURCE = {
    "service.name": "checkout",
    "service.namespace": "shop",
    "deployment.environment": "prod",
    "k8s.pod.name": "pod-1",
    "host.name": "edge-7",
    "team": "payments",
}
SCOPE_NAME = "lockstep.test"
SCOPE_VERSION = "1.2.3"
SCOPE_ATTRIBUTES = {"scope.attr": True, "scope.kind": "unit"}

TRACE_ID = 0x5B8AA5A2D2C872E8321CF37308D69DF2
SPAN_ID = 0x051581BF3CB55C13
T0 = 1_700_000_000_123_456_789

# One dict per record, emitted in order. Keys: body, severity_number (int), severity_text,
# attributes, timestamp (None: unset, 0 on the wire), observed_timestamp, event_name,
# trace_id / span_id (ints; default TRACE_ID / SPAN_ID), trace_flags (default 1).
RECORDS = [
    {
        "body": "payment failed",
        "severity_number": 17,
        "severity_text": "ERROR",
        "timestamp": T0,
        "observed_timestamp": T0 + 1_000,
        "attributes": {
            "http.status_code": 500,
            "big": 5_000_000_000,
            "ratio": 0.25,
            "retry": True,
            "tags": ["a", "b"],
            "user": {"id": "u-1", "tier": 2},
        },
    },
    {
        "body": "number only",
        "severity_number": 9,
        "timestamp": T0 + 1_000_000,
        "observed_timestamp": T0 + 1_001_000,
    },
    {
        "body": "text only",
        "severity_text": "WARN",
        "timestamp": T0 + 2_000_000,
        "observed_timestamp": T0 + 2_001_000,
    },
    {
        "body": "no severity",
        "timestamp": T0 + 3_000_000,
        "observed_timestamp": T0 + 3_001_000,
        "span_id": 0x1111111111111111,
    },
    {
        "body": {"msg": "structured", "n": 7, "ok": False, "items": ["x", "y"], "inner": {"k": "v"}},
        "severity_number": 5,
        "severity_text": "DEBUG",
        "timestamp": T0 + 4_000_000,
        "observed_timestamp": T0 + 4_001_000,
        "event_name": "cart.checked",
    },
    {
        "body": "unset timestamp",
        "severity_number": 13,
        "timestamp": None,
        "observed_timestamp": T0 + 5_000_000,
    },
]


class Recording(LogRecordExporter):
    def __init__(self, inner):
        self.inner = inner
        self.results = []

    def export(self, batch):
        r = self.inner.export(batch)
        self.results.append(r)
        return r

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def context_for(rec):
    span = NonRecordingSpan(
        SpanContext(
            trace_id=rec.get("trace_id", TRACE_ID),
            span_id=rec.get("span_id", SPAN_ID),
            is_remote=True,
            trace_flags=TraceFlags(rec.get("trace_flags", 1)),
        )
    )
    return trace.set_span_in_context(span)


def main(argv):
    endpoint, rest = argv[1], argv[2:]
    gzip = "--gzip" in rest
    resource = dict(RESOURCE)
    # --resource k=v: one resource attribute more; --t0 NS: the records' times shifted to
    # start at NS (scripts/diff-otlp-loki.py: a real Loki refuses old samples)
    for i, a in enumerate(rest):
        if a == "--resource":
            k, v = rest[i + 1].split("=", 1)
            resource[k] = v
        if a == "--t0":
            shift = int(rest[i + 1]) - T0
            for rec in RECORDS:
                for k in ("timestamp", "observed_timestamp"):
                    if rec.get(k):
                        rec[k] += shift
    exporter = Recording(
        OTLPLogExporter(
            endpoint=endpoint,
            compression=Compression.Gzip if gzip else Compression.NoCompression,
            timeout=10,
        )
    )
    provider = LoggerProvider(resource=Resource(resource))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, max_export_batch_size=512))
    logger = provider.get_logger(SCOPE_NAME, SCOPE_VERSION, None, SCOPE_ATTRIBUTES)
    for rec in RECORDS:
        sev = rec.get("severity_number")
        logger.emit(
            timestamp=rec.get("timestamp"),
            observed_timestamp=rec.get("observed_timestamp"),
            context=context_for(rec),
            severity_number=SeverityNumber(sev) if sev is not None else None,
            severity_text=rec.get("severity_text"),
            body=rec.get("body"),
            attributes=rec.get("attributes"),
            event_name=rec.get("event_name"),
        )
    provider.shutdown()
    ok = bool(exporter.results) and all(r == LogRecordExportResult.SUCCESS for r in exporter.results)
    print("export SUCCESS" if ok else "export FAILURE", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
