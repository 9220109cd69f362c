"""Prometheus metrics. Declared once here; served by /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS_CREATED = Counter("genvault_jobs_created_total", "Jobs accepted", ["endpoint"])
JOBS_FINISHED = Counter(
    "genvault_jobs_finished_total", "Jobs that reached a final state", ["endpoint", "status"]
)
WEBHOOKS = Counter(
    "genvault_webhooks_total", "Webhook deliveries by outcome", ["provider", "outcome"]
)
TASKS = Counter("genvault_tasks_total", "Tasks run, by kind and outcome", ["kind", "outcome"])
TASK_SECONDS = Histogram("genvault_task_seconds", "Task run time", ["kind"])
ASSETS_ARCHIVED = Counter("genvault_assets_archived_total", "Images archived", ["role"])
ARCHIVED_BYTES = Counter("genvault_archived_bytes_total", "Bytes archived")
WEBHOOK_SECONDS = Histogram(
    "genvault_webhook_seconds",
    "Time to verify, record and acknowledge a webhook",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)

EVENT_DELIVERIES = Counter(
    "genvault_event_deliveries_total",
    "Event delivery attempts by outcome (succeeded, retry, failed, disabled)",
    ["outcome"],
)
EVENT_DELIVERIES_BY_TYPE = Counter(
    "genvault_event_deliveries_by_type_total",
    "Event delivery attempts by endpoint type (http sqs sns eventbridge rabbitmq nats redis) "
    "and outcome",
    ["endpoint_type", "outcome"],
)
EVENT_ATTEMPT_SECONDS = Histogram(
    "genvault_event_attempt_seconds",
    "Time of one event delivery attempt, connect to last byte",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 30.0),
)
# Read from the database at scrape time; "mostrecent" so gunicorn's processes agree.
EVENT_PENDING = Gauge(
    "genvault_event_deliveries_pending",
    "Event deliveries not yet succeeded or given up",
    multiprocess_mode="mostrecent",
)
EVENT_OLDEST_PENDING_SECONDS = Gauge(
    "genvault_event_oldest_pending_seconds",
    "Age of the oldest pending event delivery (0 when none)",
    multiprocess_mode="mostrecent",
)

# For the dashboard and the alerting rules in deploy/ (README "Operations", "Monitoring").
JOB_ARCHIVED_SECONDS = Histogram(
    "genvault_job_archived_seconds",
    "Time from a job's acceptance (POST /v1/jobs) to archived",
    ["endpoint"],
    buckets=(2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600),
)
EVENT_ENDPOINT_FAILURES = Counter(
    "genvault_event_endpoint_failures_total",
    "Event delivery attempts that did not succeed (error, timeout, non-2xx), by endpoint",
    ["endpoint_id"],
)
# Read from the database at scrape time, like the event gauges; one series per task kind.
TASKS_QUEUED = Gauge(
    "genvault_tasks_queued",
    "Tasks due to run and waiting for a worker",
    ["kind"],
    multiprocess_mode="mostrecent",
)
TASK_OLDEST_QUEUED_SECONDS = Gauge(
    "genvault_task_oldest_queued_seconds",
    "How long the longest-waiting due task has waited since it became due (0 when none)",
    ["kind"],
    multiprocess_mode="mostrecent",
)
READY = Gauge(
    "genvault_ready",
    "1 when the readiness check passes, 0 when not (checked at /readyz and at each scrape)",
    ["check"],
    multiprocess_mode="mostrecent",
)
