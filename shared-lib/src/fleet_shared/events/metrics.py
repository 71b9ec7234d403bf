"""Event metrics: what the relay published and what the consumer did with each delivery."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

PUBLISHED = Counter("fleet_events_published_total", "Events confirmed by the broker", ["type"])
REFUSED = Counter(
    "fleet_events_refused_total", "Publishes kept in the outbox for a later attempt",
    ["type", "reason"],
)  # reason: unroutable (no queue bound for the type) | nacked (the broker refused it)
CONSUMED = Counter(
    "fleet_events_consumed_total", "Deliveries handled", ["type", "outcome"]
)  # outcome: applied | duplicate
RETRIED = Counter("fleet_events_retried_total", "Deliveries sent to a retry queue", ["type"])
DEAD_LETTERED = Counter(
    "fleet_events_dead_lettered_total", "Deliveries parked", ["type", "reason"]
)  # reason: invalid (never applicable) | handler (failed every attempt)
CONTENDED = Counter(
    "fleet_events_contention_retries_total",
    "Batches or deliveries tried again after a deadlock, serialization failure or lock timeout",
)
OUTBOX_BACKLOG = Gauge(
    "fleet_outbox_backlog", "Outbox rows not yet confirmed by the broker",
    multiprocess_mode="max",
)
OUTBOX_OLDEST_AGE = Gauge(
    "fleet_outbox_oldest_age_seconds", "Age of the oldest unsent outbox row",
    multiprocess_mode="max",
)
QUEUE_READY = Gauge(
    "fleet_queue_messages_ready", "Messages ready in the service's event queue", ["queue"],
    multiprocess_mode="max",
)
