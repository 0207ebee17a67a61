"""Prometheus metrics: the spec's three, plus HTTP, webhook and breaker metrics.

The API serves them at /metrics; the ARQ worker serves its own registry on
NOTIFICATIONS_WORKER_METRICS_PORT (default 9102) so Prometheus scrapes both.
"""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

notifications_sent_total = Counter(
    "notifications_sent_total",
    "Total notifications sent",
    ["channel", "provider", "status"],
)
notification_latency_seconds = Histogram(
    "notification_latency_seconds",
    "Notification processing latency",
    ["channel", "provider"],
    buckets=[0.1, 0.5, 1, 2, 5, 10],
)
notification_queue_size = Gauge("notification_queue_size", "Current queue size")

notifications_accepted_total = Counter(
    "notifications_accepted_total", "Notifications accepted by the API", ["channel", "status"]
)
provider_requests_total = Counter(
    "notification_provider_requests_total",
    "Provider API calls by outcome",
    ["provider", "outcome"],
)
provider_breaker_state = Gauge(
    "notification_provider_breaker_open",
    "1 when the provider's circuit breaker is open or half-open",
    ["provider"],
)
provider_last_success = Gauge(
    "notification_provider_last_success_timestamp",
    "Unix time of the provider's last successful send",
    ["provider"],
)
http_requests_total = Counter(
    "notification_http_requests_total", "HTTP requests", ["method", "route", "status"]
)
http_request_seconds = Histogram(
    "notification_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
)
webhook_events_total = Counter(
    "notification_webhook_events_total", "Webhook events received", ["provider", "type", "result"]
)

# ---- added by the REST / webhook interface ------------------------------------------
api_rate_limited_total = Counter(
    "notification_api_rate_limited_total", "REST requests refused by the per-IP rate limit"
)
webhook_requests_total = Counter(
    "notification_webhook_requests_total",
    "Webhook requests by provider and outcome (accepted, duplicate, rejected, invalid, ...)",
    ["provider", "result"],
)


@functools.cache
def _child(metric: Any, values: tuple[str, ...]) -> Any:
    return metric.labels(*values)


def labeled(metric: Any, *values: str) -> Any:
    """metric.labels(*values), cached: prometheus_client's labels() costs a lock and a dict
    lookup with string conversion per call, and hot paths call it several times per send."""
    return _child(metric, tuple(values))
