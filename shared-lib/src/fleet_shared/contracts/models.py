"""The base of every event's `data` model, and the registry of (type, version) → model.

Each publishing service's events are declared in a module of its own beside this one
(`inventory.py`, `shipping.py`, ...), which the package imports as a whole (so `REGISTRY` is
complete once any contract module is imported); `@contract(type, version)` ties a model to one
published version. The committed JSON Schemas in ``events/`` are generated from these models
(`fleet_shared.contracts.generate`), so a consumer that reads `Model.of(event)` and one that
validates the JSON against the schema read the same contract.

A newer version of a type subclasses the older one when it only adds fields (v2 of the
shipment events adds `sequence`): code that reads the older model also reads the newer one,
since `Old.of(event)` returns whichever registered model the event's version names, as long
as it is an `Old`. Every version of a type lives in its publisher's module, so once a model
is imported, every model `of` may return for it is registered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, ClassVar, Self, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

from fleet_shared.contracts import ContractError
from fleet_shared.events.envelope import Event

# The wire form of every id: lower-case, hyphenated; `format` alone is not checked by the
# validators, so the pattern is what holds. A model reads a `uuid.UUID` (any spelling, when
# a publisher builds one) and always writes it in the wire form.
UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
Id = Annotated[UUID, WithJsonSchema({"type": "string", "format": "uuid",
                                     "pattern": UUID_PATTERN})]
Reference = Annotated[str, Field(min_length=1, max_length=100)]


class Part(BaseModel):
    """A closed object: no field beyond the declared ones, so a publisher cannot add one
    without a new contract version. Lax parsing, as JSON Schema is (5.0 is an integer)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EventData(Part):
    """The `data` of one event type and version."""

    TYPE: ClassVar[str]
    VERSION: ClassVar[int]

    @classmethod
    def of(cls, event: Event) -> Self:
        """The event's data as the model its type and version name; `ContractError` (the
        consumer parks it) when that is not a `cls` or the data breaks it."""
        model = REGISTRY.get((event.type, event.version))
        if model is None or not issubclass(model, cls):
            raise ContractError(f"{event.type} v{event.version} is not a {cls.__name__}")
        try:
            parsed = model.model_validate(event.data)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = "/".join(str(part) for part in error["loc"]) or "data"
            raise ContractError(f"{event.type} v{event.version} breaks its contract at "
                                f"{where}: {error['msg']}") from None
        assert isinstance(parsed, cls)
        return parsed

    def event(self, *, source: str) -> Event:
        """The event carrying this data, caused by the work in hand (`Event.new`)."""
        if REGISTRY.get((self.TYPE, self.VERSION)) is not type(self):
            raise TypeError(f"{type(self).__name__} is not the model of "
                            f"{self.TYPE} v{self.VERSION}")
        return Event.new(self.TYPE, self.model_dump(mode="json"), source=source,
                         version=self.VERSION)


REGISTRY: dict[tuple[str, int], type[EventData]] = {}

Model = TypeVar("Model", bound=type[EventData])


def contract(event_type: str, version: int) -> Callable[[Model], Model]:
    """Register the decorated model as the `data` of `event_type` version `version`."""

    def register(model: Model) -> Model:
        key = (event_type, version)
        if key in REGISTRY:
            raise ValueError(f"{event_type} v{version} already has a model: "
                             f"{REGISTRY[key].__name__}")
        model.TYPE, model.VERSION = key
        REGISTRY[key] = model
        return model

    return register
