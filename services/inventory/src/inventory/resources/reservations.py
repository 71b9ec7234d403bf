from __future__ import annotations

from typing import Any
from uuid import UUID

from flask_restful import Resource

from fleet_shared.http.pagination import page
from fleet_shared.http.resources import operation, unit_of_work
from fleet_shared.http.responses import tagged
from inventory import schemas, services
from inventory.resources.products import READ


class Reservations(Resource):
    @operation("List reservations (filter with ?reference=)", scope=READ,
               query=schemas.ReservationQuery, responses={200: schemas.ReservationList})
    def get(self, query: schemas.ReservationQuery) -> Any:
        return page(services.list_reservations(unit_of_work(), query.limit, query.after,
                                               query.reference), query.limit)


class ReservationItem(Resource):
    @operation("Get a reservation", scope=READ, responses={200: schemas.Reservation},
               errors=(404,))
    def get(self, reservation_id: UUID) -> Any:
        return tagged(services.get_reservation(unit_of_work(), reservation_id))
