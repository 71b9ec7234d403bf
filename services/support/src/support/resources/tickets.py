from __future__ import annotations

from typing import Any
from uuid import UUID

from flask_restful import Resource

from fleet_shared.http.etag import IfMatch, etag_of
from fleet_shared.http.pagination import page
from fleet_shared.http.resources import operation, unit_of_work
from fleet_shared.http.responses import created, database, tagged
from support import schemas, services

READ, WRITE = "support:read", "support:write"


class Tickets(Resource):
    @operation("List tickets (filter by status, priority, shipment_id, customer_email)",
               scope=READ, query=schemas.TicketQuery, responses={200: schemas.TicketList})
    def get(self, query: schemas.TicketQuery) -> Any:
        rows = services.list_tickets(
            database(), query.limit, query.after, status=query.status,
            priority=query.priority, shipment_id=query.shipment_id,
            customer_email=query.customer_email)
        return page(rows, query.limit)

    @operation("Open a ticket for a customer", scope=WRITE, body=schemas.TicketCreate,
               responses={201: schemas.Ticket}, idempotent=True)
    def post(self, body: schemas.TicketCreate) -> Any:
        ticket = services.create_ticket(unit_of_work(), body.model_dump())
        return created(ticket, f"/tickets/{ticket['id']}")


class TicketItem(Resource):
    @operation("Get a ticket with its comments and its shipment's current status", scope=READ,
               responses={200: schemas.Ticket, 304: None}, errors=(404,))
    def get(self, ticket_id: UUID) -> Any:
        return tagged(services.get_ticket(database(), ticket_id))

    @operation("Change a ticket's status, priority or assignee", scope=WRITE,
               body=schemas.TicketPatch, responses={200: schemas.Ticket}, errors=(404,),
               conditional=True,
               conflicts={"ticket-closed": "Ticket 3e8a1c52-9f4b-4d07-b6a2-7c5e0d1f9b84 is "
                                           "closed; a closed ticket cannot change.",
                          "invalid-transition": "A ticket cannot go from closed to open "
                                                "(only from pending or resolved)."})
    def patch(self, ticket_id: UUID, body: schemas.TicketPatch, if_match: IfMatch | None) -> Any:
        ticket = services.update_ticket(unit_of_work(), ticket_id,
                                        body.model_dump(exclude_unset=True), if_match)
        return ticket, 200, {"ETag": etag_of(ticket)}
