"""The actions that move a shipment along its state machine (POST /shipments/{id}/<action>).

Each answers 200 with the updated shipment, 404 for an unknown shipment, 409
(`invalid-transition`) from a status that does not allow it and, when If-Match is sent, 412
if the shipment changed since the client read it: `operation` parses the header, the rule
checks it under the row lock.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from flask import request
from flask_restful import Resource

from fleet_shared.http.etag import IfMatch, etag_of
from fleet_shared.http.resources import operation, unit_of_work
from fleet_shared.http.validation import parse_body
from shipping import schemas, services
from shipping.resources.shipments import WRITE

ERRORS = (404,)
# From a status that does not allow the action (the state machine's one refusal).
CONFLICTS = {"invalid-transition": "A shipment cannot go from pending to dispatched "
                                   "(only from ready)."}


def _no_body() -> None:
    """deliver and reserve take no parameters: no body, or `{}`."""
    if request.get_data(cache=True):
        parse_body(schemas.NoBody)


def _updated(shipment: dict[str, Any]) -> Any:
    return shipment, 200, {"ETag": etag_of(shipment)}


class Dispatch(Resource):
    @operation("Hand a ready shipment to a carrier (inventory commits the stock)",
               scope=WRITE, body=schemas.Dispatch, responses={200: schemas.Shipment},
               errors=ERRORS, conflicts=CONFLICTS, idempotent=True, conditional=True)
    def post(self, shipment_id: UUID, body: schemas.Dispatch, if_match: IfMatch | None) -> Any:
        return _updated(services.dispatch(unit_of_work(), shipment_id, body.carrier,
                                          body.tracking_number, if_match))


class Deliver(Resource):
    @operation("Record that a dispatched shipment was delivered", scope=WRITE,
               responses={200: schemas.Shipment}, errors=(*ERRORS, 400, 415, 422),
               conflicts=CONFLICTS, idempotent=True, conditional=True)
    def post(self, shipment_id: UUID, if_match: IfMatch | None) -> Any:
        _no_body()
        return _updated(services.deliver(unit_of_work(), shipment_id, if_match))


class Fail(Resource):
    @operation("Record that delivery of a dispatched shipment failed", scope=WRITE,
               body=schemas.Fail, responses={200: schemas.Shipment}, errors=ERRORS,
               conflicts=CONFLICTS, idempotent=True, conditional=True)
    def post(self, shipment_id: UUID, body: schemas.Fail, if_match: IfMatch | None) -> Any:
        return _updated(services.fail(unit_of_work(), shipment_id, body.reason, if_match))


class Cancel(Resource):
    @operation("Cancel a shipment not yet dispatched (inventory releases its stock)",
               scope=WRITE, body=schemas.Cancel, responses={200: schemas.Shipment},
               errors=ERRORS, conflicts=CONFLICTS, idempotent=True, conditional=True)
    def post(self, shipment_id: UUID, body: schemas.Cancel, if_match: IfMatch | None) -> Any:
        return _updated(services.cancel(unit_of_work(), shipment_id, body.reason, if_match))


class Reserve(Resource):
    @operation("Ask inventory again to reserve a backordered shipment (back to pending)",
               scope=WRITE, responses={200: schemas.Shipment}, errors=(*ERRORS, 400, 415, 422),
               conflicts=CONFLICTS, idempotent=True, conditional=True)
    def post(self, shipment_id: UUID, if_match: IfMatch | None) -> Any:
        _no_body()
        return _updated(services.request_reservation(unit_of_work(), shipment_id, if_match))
