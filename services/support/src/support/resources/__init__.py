"""Every route of the support API, registered in one place."""

from __future__ import annotations

from fleet_shared.http.resources import ProblemApi
from fleet_shared.http.validation import checked_path
from support.resources.comments import CommentItem, Comments
from support.resources.tickets import TicketItem, Tickets


def register(api: ProblemApi) -> None:
    api.decorators.append(checked_path)  # before any route: each is wrapped as it is added
    api.add_resource(Tickets, "/tickets")
    api.add_resource(TicketItem, "/tickets/<uuid:ticket_id>")
    api.add_resource(Comments, "/tickets/<uuid:ticket_id>/comments")
    api.add_resource(CommentItem, "/tickets/<uuid:ticket_id>/comments/<uuid:comment_id>")
