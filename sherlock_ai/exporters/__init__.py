"""Exporters: consumers that turn measured requests into metrics and span attributes.

- Prometheus: :mod:`sherlock_ai.exporters.prometheus` (``PrometheusExporter``,
  ``pip install "sherlock-ai[prometheus]"``).
- OpenTelemetry: :mod:`sherlock_ai.exporters.opentelemetry` (``OpenTelemetryExporter``,
  ``pip install "sherlock-ai[otel]"``).

Each registers itself as one consumer (:mod:`sherlock_ai.consumers`). Importing this package
imports no backend.
"""
