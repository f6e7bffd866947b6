"""Prometheus metrics of one server, on its own registry (tests run several servers in
one process; the global registry would mix them).

Request counts, errors and latencies are recorded by the app as requests end; queue
depth, running sequences and token counts are read from the engine at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ocelli.serve.engine import Engine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _EngineCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        yield GaugeMetricFamily(
            "ocelli_queue_depth", "Sequences waiting for a batch slot", engine.num_waiting
        )
        yield GaugeMetricFamily(
            "ocelli_running_sequences", "Sequences in the running batch", engine.num_running
        )
        yield CounterMetricFamily(
            "ocelli_prompt_tokens", "Prompt tokens prefilled", engine.prompt_tokens_total
        )
        yield CounterMetricFamily(
            "ocelli_generation_tokens", "Tokens generated", engine.generated_tokens_total
        )
        yield GaugeMetricFamily(
            "ocelli_generation_tokens_per_second",
            "Tokens generated per second over the last 10 s",
            engine.tokens_per_second(),
        )


class ServerMetrics:
    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ocelli_requests",
            "HTTP requests answered, by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "ocelli_request_errors",
            "Requests answered with an error, by OpenAI error code",
            ["code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ocelli_request_latency_seconds",
            "Chat completion time from request to last token",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_token = Histogram(
            "ocelli_time_to_first_token_seconds",
            "Chat completion time from request to first streamed token",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_EngineCollector(engine))

    def render(self) -> bytes:
        return generate_latest(self.registry)
