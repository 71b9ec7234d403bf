"""Support's business rules. Functions take their unit of work (or database) as a parameter
and know nothing of HTTP; resources and event handlers both call them. Refusals are
`fleet_shared.domain` errors, which the HTTP edge turns into problem documents."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, select, text
from sqlalchemy.orm import Session

from fleet_shared.db import Database, UnitOfWork, iso_timestamp
from fleet_shared.domain import Conflict, NotFound, StateMachine, Transition
from fleet_shared.http.etag import IfMatch, etag_of
from support import models

log = logging.getLogger(__name__)

# --- the ticket state machine (no I/O) -----------------------------------------------------

#: Where a ticket may go, and from where. A PATCH names the status it wants, so each move is
#: named by the status it reaches. Closed is final (no move starts from it).
TICKETS: StateMachine[str, Transition[str]] = StateMachine("ticket", "open", {
    "pending": Transition(frozenset({"open"}), "pending"),
    "resolved": Transition(frozenset({"pending"}), "resolved"),
    "open": Transition(frozenset({"pending", "resolved"}), "open"),  # reopened
    "closed": Transition(frozenset({"resolved"}), "closed"),
})


#: Why support opens a system ticket, and at which priority (DESIGN.md §4 point 5).
SYSTEM_PRIORITIES: Mapping[str, str] = {"backordered": "high", "failed": "urgent",
                                         "stalled": "urgent"}


# --- reads ------------------------------------------------------------------------------------

Executor = Connection | Session
AnyRow = Row[*tuple[Any, ...]]

_TICKET = select(
    models.Ticket.id, models.Ticket.seq, models.Ticket.subject, models.Ticket.description,
    models.Ticket.customer_email, models.Ticket.shipment_id, models.Ticket.status,
    models.Ticket.priority, models.Ticket.source, models.Ticket.reason, models.Ticket.assignee,
    models.Ticket.created_at, models.Ticket.updated_at,
    # Read at query time from the projection, so every linked ticket shows the current status.
    models.Shipment.status.label("shipment_status"),
).outerjoin(models.Shipment, models.Shipment.shipment_id == models.Ticket.shipment_id)

_COMMENT = select(
    models.Comment.id, models.Comment.ticket_id, models.Comment.author, models.Comment.body,
    models.Comment.created_at,
)


def _summary(row: AnyRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "subject": row.subject,
        "description": row.description,
        "customer_email": row.customer_email,
        "shipment_id": str(row.shipment_id) if row.shipment_id else None,
        "shipment_status": row.shipment_status,
        "status": row.status,
        "priority": row.priority,
        "source": row.source,
        "reason": row.reason,
        "assignee": row.assignee,
        "created_at": iso_timestamp(row.created_at),
        "updated_at": iso_timestamp(row.updated_at),
    }


def _comment(row: AnyRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "ticket_id": str(row.ticket_id),
        "author": row.author,
        "body": row.body,
        "created_at": iso_timestamp(row.created_at),
    }


def _load_ticket(executor: Executor, ticket_id: uuid.UUID) -> dict[str, Any]:
    row = executor.execute(_TICKET.where(models.Ticket.id == ticket_id)).first()
    if row is None:
        raise NotFound(f"No ticket {ticket_id}.")
    ticket = _summary(row)
    ticket["comments"] = [_comment(c) for c in executor.execute(
        _COMMENT.where(models.Comment.ticket_id == ticket_id).order_by(models.Comment.seq))]
    return ticket


def get_ticket(db: Database, ticket_id: uuid.UUID) -> dict[str, Any]:
    with db.read_engine.connect() as conn:
        return _load_ticket(conn, ticket_id)


def get_ticket_in(uow: UnitOfWork, ticket_id: uuid.UUID) -> dict[str, Any]:
    """The ticket as this transaction sees it."""
    return _load_ticket(uow.session, ticket_id)


def list_tickets(
    db: Database,
    limit: int,
    after: int | None,
    *,
    status: str | None = None,
    priority: str | None = None,
    shipment_id: uuid.UUID | None = None,
    customer_email: str | None = None,
) -> list[tuple[int, dict[str, Any]]]:
    """Oldest first by creation sequence; `limit + 1` rows, each beside its page key (the
    creation sequence)."""
    query = _TICKET.order_by(models.Ticket.seq).limit(limit + 1)
    if after is not None:
        query = query.where(models.Ticket.seq > after)
    if status is not None:
        query = query.where(models.Ticket.status == status)
    if priority is not None:
        query = query.where(models.Ticket.priority == priority)
    if shipment_id is not None:
        query = query.where(models.Ticket.shipment_id == shipment_id)
    if customer_email is not None:
        query = query.where(func.lower(models.Ticket.customer_email) == customer_email.lower())
    with db.read_engine.connect() as conn:
        return [(row.seq, _summary(row)) for row in conn.execute(query)]


def get_comment(db: Database, ticket_id: uuid.UUID, comment_id: uuid.UUID) -> dict[str, Any]:
    with db.read_engine.connect() as conn:
        row = conn.execute(_COMMENT.where(models.Comment.id == comment_id,
                                          models.Comment.ticket_id == ticket_id)).first()
    if row is None:
        raise NotFound(f"No comment {comment_id} on ticket {ticket_id}.")
    return _comment(row)


# --- tickets and comments ---------------------------------------------------------------------

def _now(uow: UnitOfWork) -> datetime:
    moment: datetime = uow.session.scalar(select(text("clock_timestamp()")))
    return moment


def create_ticket(uow: UnitOfWork, fields: dict[str, Any]) -> dict[str, Any]:
    """A customer's ticket: open, from the customer. `shipment_id` is taken on trust (support
    may not have heard of the shipment yet); its status shows once the projection knows it."""
    with uow:
        ticket = models.Ticket(id=uuid.uuid4(), status="open", source="customer", **fields)
        uow.session.add(ticket)
        uow.session.flush()
        created = get_ticket_in(uow, ticket.id)
        uow.commit()
        return created


def lock_ticket(uow: UnitOfWork, ticket_id: uuid.UUID) -> models.Ticket:
    ticket: models.Ticket | None = uow.session.scalars(
        select(models.Ticket).where(models.Ticket.id == ticket_id).with_for_update()).first()
    if ticket is None:
        raise NotFound(f"No ticket {ticket_id}.")
    return ticket


def update_ticket(
    uow: UnitOfWork,
    ticket_id: uuid.UUID,
    changes: dict[str, Any],
    expected: IfMatch | None = None,
) -> dict[str, Any]:
    """Change status, priority or assignee.

    PreconditionFailed when the ticket is not the version the client `expected` (checked
    under the row lock, before anything else); InvalidTransition for a status change the
    machine does not allow (staying in the same status is no change, so always allowed); a
    closed ticket is final: changing anything is a Conflict.
    """
    with uow:
        ticket = lock_ticket(uow, ticket_id)
        if expected is not None:
            expected.check(etag_of(get_ticket_in(uow, ticket_id)))
        changed = {key: value for key, value in changes.items()
                   if getattr(ticket, key) != value}
        if "status" in changed:
            TICKETS.check(ticket.status, changed["status"])
        elif changed and ticket.status == "closed":
            raise Conflict(f"Ticket {ticket_id} is closed; a closed ticket cannot change.",
                           "ticket-closed")
        for key, value in changed.items():
            setattr(ticket, key, value)
        if changed:
            ticket.updated_at = _now(uow)
        uow.session.flush()
        updated = get_ticket_in(uow, ticket_id)
        uow.commit()
        return updated


def add_comment(uow: UnitOfWork, ticket_id: uuid.UUID, author: str, body: str) -> dict[str, Any]:
    with uow:
        ticket = lock_ticket(uow, ticket_id)
        if ticket.status == "closed":
            raise Conflict(f"Ticket {ticket_id} is closed; a closed ticket takes no comments.",
                           "ticket-closed")
        comment = models.Comment(id=uuid.uuid4(), ticket_id=ticket_id, author=author, body=body)
        uow.session.add(comment)
        ticket.updated_at = _now(uow)
        uow.session.flush()
        row = uow.session.execute(_COMMENT.where(models.Comment.id == comment.id)).one()
        uow.commit()
        return _comment(row)


# --- the shipment projection and system tickets (the saga) ----------------------------------

@dataclass(frozen=True)
class ShipmentChanged:
    """What one shipping event says about a shipment, whichever event it was."""

    shipment_id: uuid.UUID
    order_reference: str
    status: str
    occurred_at: datetime
    customer_email: str | None = None  # only shipping.shipment.created carries the customer
    sequence: int | None = None  # shipping's order of the shipment's events (v2 on)


@dataclass(frozen=True)
class ShipmentView:
    status: str
    customer_email: str | None


# The projection's upsert (see record_shipment), on the driver connection (UnitOfWork.execute).
_UPSERT_SHIPMENT = """
INSERT INTO shipments AS s (shipment_id, order_reference, status, status_at, status_seq,
                            customer_email)
VALUES (%(shipment_id)s, %(order_reference)s, %(status)s, %(status_at)s, %(status_seq)s,
        %(customer_email)s)
ON CONFLICT (shipment_id) DO UPDATE SET
    status = CASE WHEN CASE WHEN excluded.status_seq IS NOT NULL AND s.status_seq IS NOT NULL
                            THEN excluded.status_seq > s.status_seq
                            ELSE excluded.status_at > s.status_at END
                  THEN excluded.status ELSE s.status END,
    status_at = greatest(s.status_at, excluded.status_at),
    -- greatest() skips nulls: a v1 event leaves the sequence as it was.
    status_seq = greatest(s.status_seq, excluded.status_seq),
    customer_email = coalesce(excluded.customer_email, s.customer_email),
    updated_at = now()"""
_RETURNING_VIEW = " RETURNING status, customer_email"
_FILL_CUSTOMER_EMAIL = """
UPDATE tickets SET customer_email = %s, updated_at = clock_timestamp()
WHERE shipment_id = %s AND source = 'system' AND customer_email IS NULL"""
_OPEN_SYSTEM_TICKET = """
INSERT INTO tickets (id, subject, description, customer_email, shipment_id, priority, status,
                     source, reason)
VALUES (%s, %s, %s, %s, %s, %s, 'open', 'system', %s)
ON CONFLICT (shipment_id, reason) WHERE source = 'system' DO NOTHING
RETURNING id"""


def record_shipment(uow: UnitOfWork, change: ShipmentChanged) -> ShipmentView:
    """Upsert the projection in one statement (the row lock makes it race-free) and return
    the shipment as it now stands.

    The status moves only for an event newer than every one seen before: by `sequence`,
    which shipping assigns under the shipment's row lock, when both the event and the row
    carry one; by `occurred_at` otherwise (v1 events, rows projected from them), a wall clock
    of whichever pod wrote the event and only a fallback. So an event delivered late never
    moves a shipment backwards. The row keeps the highest sequence and the latest
    `occurred_at` seen; the customer's email is kept whatever the order, since only the
    created event carries it.

    Written with `UnitOfWork.execute`: no SQLAlchemy compile and result per event.
    """
    [(status, customer_email)] = uow.execute(_UPSERT_SHIPMENT + _RETURNING_VIEW,
                                             _shipment_params(change)).fetchall()
    if change.customer_email is not None:
        _fill_customer_email(uow, change.shipment_id, change.customer_email)
    return ShipmentView(status, customer_email)


def project_shipment(uow: UnitOfWork, change: ShipmentChanged) -> None:
    """`record_shipment` without reading anything back: nothing is waited for, so in a
    pipelined handler (`fleet_shared.events.consumer.pipelined`) the statements go out with
    the rest of the consumer's batch in one round trip."""
    uow.execute(_UPSERT_SHIPMENT, _shipment_params(change))
    if change.customer_email is not None:
        _fill_customer_email(uow, change.shipment_id, change.customer_email)


def _shipment_params(change: ShipmentChanged) -> dict[str, Any]:
    return {"shipment_id": change.shipment_id, "order_reference": change.order_reference,
            "status": change.status, "status_at": change.occurred_at,
            "status_seq": change.sequence, "customer_email": change.customer_email}


def _fill_customer_email(uow: UnitOfWork, shipment_id: uuid.UUID, email: str) -> None:
    """System tickets opened before the created event arrived learn their customer now."""
    uow.execute(_FILL_CUSTOMER_EMAIL, (email, shipment_id))


def open_system_ticket(
    uow: UnitOfWork,
    shipment_id: uuid.UUID,
    reason: str,
    subject: str,
    description: str,
    customer_email: str | None,
) -> uuid.UUID | None:
    """Open the one system ticket for this shipment and reason; None if it already exists.

    The unique index decides, so a redelivered event, a second backorder of the same
    shipment, or two workers racing all leave exactly one ticket.
    """
    found = uow.execute(_OPEN_SYSTEM_TICKET, (
        uuid.uuid4(), subject[:200], description, customer_email, shipment_id,
        SYSTEM_PRIORITIES[reason], reason)).fetchone()
    ticket_id: uuid.UUID | None = None if found is None else found[0]
    if ticket_id is None:
        log.info("system ticket already open", extra={"shipment_id": str(shipment_id),
                                                      "reason": reason})
    else:
        log.info("system ticket opened", extra={"shipment_id": str(shipment_id),
                                                "reason": reason, "ticket_id": str(ticket_id)})
    return ticket_id
