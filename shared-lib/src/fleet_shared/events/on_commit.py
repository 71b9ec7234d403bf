"""Events leave the process that committed them, right after the commit.

An api process that writes events (a new shipment's reservation request, a cancellation) runs
an outbox relay of its own, started on the first commit that wrote any and woken by every
such commit (`Database.after_publish`). The event is on the broker a few milliseconds after
the request's commit instead of at the worker relay's next look at the outbox, which was most
of a saga hop's latency (docs/architecture.md, "Publishing right after commit").

Nothing about the guarantee changes: the row was committed with the state change, this relay
claims it like any other (``FOR UPDATE SKIP LOCKED``), publishes it with confirms and marks it
sent. If it cannot — broker down, process killed between confirm and mark — the row stays
unsent and the service's worker relay, which polls the outbox, sends it; a message that went
out twice is absorbed by the consumers' inbox. The api's readiness never depends on the
broker: this relay only reconnects in the background.
"""

from __future__ import annotations

import atexit
import threading

from fleet_shared.contracts import has_consumers
from fleet_shared.db import Database
from fleet_shared.events.relay import OutboxRelay
from fleet_shared.settings import FleetSettings

# Woken on every commit that wrote events, this relay needs no frequent look of its own: it
# backs off to one look every few seconds, and the worker's relay is the safety net.
IDLE_POLL = 5.0
STOP_TIMEOUT = 5.0  # at exit: the confirms of a batch in flight, then its mark


class RelayOnCommit:
    """The `Database.after_publish` hook of an api process: start the relay once, wake it."""

    def __init__(self, relay: OutboxRelay) -> None:
        self.relay = relay
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __call__(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    # Started on first use, in the process that will use it: a gunicorn
                    # worker, never the master it was forked from.
                    self._thread = threading.Thread(target=self.relay.run, args=(self._stop,),
                                                    name=self.relay.name, daemon=True)
                    self._thread.start()
                    atexit.register(self.stop)
        self.relay.wake()  # a no-op until connected; the relay looks first thing then

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            atexit.unregister(self.stop)
            thread.join(STOP_TIMEOUT)


def relay_on_commit(db: Database, settings: FleetSettings, name: str) -> RelayOnCommit:
    """Have `db`'s commits that write events relay them from this process at once."""
    relay = OutboxRelay(db, settings.broker_url.get_secret_value(), settings.event_exchange,
                        name=name, idle_poll=IDLE_POLL, mandatory=has_consumers)
    hook = RelayOnCommit(relay)
    db.after_publish = hook
    return hook
