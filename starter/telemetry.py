"""Traces and metrics for workers and clients, from the environment.

* ``TIDEFLOW_TRACING=console`` prints OpenTelemetry spans; ``otlp`` sends them to
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` (needs the ``opentelemetry-exporter-otlp`` package). Spans
  cover starting runs, running the workflow and every node's activity, each tagged with the
  node id (``tideflow.node``) and type, and are propagated through Temporal from client to
  worker.
* ``TIDEFLOW_METRICS_ADDRESS=0.0.0.0:9464`` serves Temporal's worker metrics (task latencies,
  slots, activity outcomes) for Prometheus.
"""

from __future__ import annotations

import os
from functools import cache

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from temporalio.client import Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig


class TelemetryError(RuntimeError):
    """A telemetry setting that cannot be honoured."""


def interceptors(environ: dict[str, str] | None = None) -> list[Interceptor]:
    """The client/worker interceptors ``TIDEFLOW_TRACING`` asks for (none by default)."""
    env = os.environ if environ is None else environ
    mode = env.get("TIDEFLOW_TRACING", "").strip().lower()
    if not mode or mode == "off":
        return []
    install_tracer(_processor(mode))
    return [TracingInterceptor()]


def install_tracer(processor: SpanProcessor) -> TracerProvider:
    """Make a tracer provider with ``processor`` the global one (once per process)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(processor)
    return provider


def _processor(mode: str) -> SpanProcessor:
    exporter: SpanExporter
    if mode == "console":
        return SimpleSpanProcessor(ConsoleSpanExporter())
    if mode == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as e:
            raise TelemetryError(
                "TIDEFLOW_TRACING=otlp needs the opentelemetry-exporter-otlp package"
            ) from e
        exporter = OTLPSpanExporter()
        return BatchSpanProcessor(exporter)
    raise TelemetryError(f"TIDEFLOW_TRACING={mode!r}: use console, otlp or off")


@cache
def runtime(address: str | None = None) -> Runtime | None:
    """A Temporal runtime serving Prometheus metrics at ``TIDEFLOW_METRICS_ADDRESS``."""
    address = address or os.environ.get("TIDEFLOW_METRICS_ADDRESS")
    if not address:
        return None
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))
