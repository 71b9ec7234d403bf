from __future__ import annotations

from typing import Any
from uuid import UUID

from flask_restful import Resource

from fleet_shared.http.resources import operation, unit_of_work
from fleet_shared.http.responses import created, database, tagged
from support import schemas, services
from support.resources.tickets import READ, WRITE


class Comments(Resource):
    @operation("Comment on a ticket", scope=WRITE, body=schemas.CommentCreate,
               responses={201: schemas.Comment}, errors=(404,), idempotent=True,
               conflicts={"ticket-closed": "Ticket 3e8a1c52-9f4b-4d07-b6a2-7c5e0d1f9b84 is "
                                           "closed; a closed ticket takes no comments."})
    def post(self, ticket_id: UUID, body: schemas.CommentCreate) -> Any:
        comment = services.add_comment(unit_of_work(), ticket_id, body.author, body.body)
        return created(comment, f"/tickets/{ticket_id}/comments/{comment['id']}")


class CommentItem(Resource):
    @operation("Get one comment of a ticket", scope=READ,
               responses={200: schemas.Comment, 304: None}, errors=(404,))
    def get(self, ticket_id: UUID, comment_id: UUID) -> Any:
        return tagged(services.get_comment(database(), ticket_id, comment_id))
