"""Event metrics: what the relay published and what the consumer did with each delivery."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

PUBLISHED = Counter("fleet_events_published_total", "Events confirmed by the broker", ["type"])
CONSUMED = Counter(
    "fleet_events_consumed_total", "Deliveries handled", ["type", "outcome"]
)  # outcome: applied | duplicate
RETRIED = Counter("fleet_events_retried_total", "Deliveries sent to a retry queue", ["type"])
DEAD_LETTERED = Counter(
    "fleet_events_dead_lettered_total", "Deliveries parked", ["type", "reason"]
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
