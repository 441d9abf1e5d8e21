#!/usr/bin/env python3
"""A real OTLP/HTTP trace sender for the decision feed's tests: the OpenTelemetry Python
SDK (opentelemetry-sdk, opentelemetry-exporter-otlp-proto-http, from PyPI) exporting a
root span and a child span for each given trace id, as an application would.

usage: otlp_trace_client.py ENDPOINT [--gzip] [--token TOKEN] HEXID [HEXID ...]

ENDPOINT is used verbatim (it must end in /v1/traces). Prints `export SUCCESS` or
`export FAILURE` (the exporter's own verdict on the receiver's answer) and exits 0 or 1.
"""
import random
import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator


class Given(IdGenerator):
    """Trace ids from the command line, in order (a root span takes the next one)."""

    def __init__(self, ids):
        self.ids = list(ids)

    def generate_span_id(self):
        return random.getrandbits(64) or 1

    def generate_trace_id(self):
        return self.ids.pop(0)


class Recording(SpanExporter):
    def __init__(self, inner):
        self.inner = inner
        self.results = []

    def export(self, spans):
        r = self.inner.export(spans)
        self.results.append(r)
        return r

    def shutdown(self):
        self.inner.shutdown()


def main(argv):
    endpoint, rest = argv[1], argv[2:]
    gzip, token, ids = False, None, []
    while rest:
        a = rest.pop(0)
        if a == "--gzip":
            gzip = True
        elif a == "--token":
            token = rest.pop(0)
        else:
            ids.append(int(a, 16))
    headers = {"authorization": f"Bearer {token}"} if token else None
    exporter = Recording(
        OTLPSpanExporter(
            endpoint=endpoint,
            compression=Compression.Gzip if gzip else Compression.NoCompression,
            headers=headers,
            timeout=10,
        )
    )
    provider = TracerProvider(
        id_generator=Given(ids),
        resource=Resource.create({"service.name": "checkout"}),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=512))
    tracer = provider.get_tracer("lockstep-feed-test")
    for _ in range(len(ids)):
        with tracer.start_as_current_span("GET /cart"):
            with tracer.start_as_current_span("SELECT cart"):
                pass
    provider.shutdown()
    ok = bool(exporter.results) and all(r == SpanExportResult.SUCCESS for r in exporter.results)
    print("export SUCCESS" if ok else "export FAILURE", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
