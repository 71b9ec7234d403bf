"""The stock rules on their own: what a reservation takes, what an adjustment may do, when
stock is low. No I/O: `inventory.services` reads and locks the rows, asks these, and writes
what they decide, so the rules are tested without a database (tests/unit).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from fleet_shared.domain import Conflict
from inventory.models import LEVEL_MAX


class Level(Protocol):
    """One warehouse's stock of one sku (models.StockLevel is one)."""

    @property
    def sku(self) -> str: ...
    @property
    def warehouse(self) -> str: ...
    @property
    def on_hand(self) -> int: ...
    @property
    def reserved(self) -> int: ...


def available(levels: Iterable[Level]) -> dict[str, int]:
    """Available units per sku, over every warehouse given."""
    totals: dict[str, int] = defaultdict(int)
    for level in levels:
        totals[level.sku] += level.on_hand - level.reserved
    return dict(totals)


def wanted(items: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The quantity asked for each sku (a sku on several lines is asked for once, summed)."""
    quantities: dict[str, int] = defaultdict(int)
    for item in items:
        quantities[item["sku"]] += int(item["quantity"])
    return dict(quantities)


@dataclass(frozen=True)
class Allocation:
    """What a reservation takes: a warehouse for every sku, or else the shortages."""

    warehouses: dict[str, str]  # sku -> the warehouse its units come from
    shortages: list[dict[str, Any]]  # [{sku, requested, available}], in sku order


def allocate(wanted: Mapping[str, int], levels: Iterable[Level]) -> Allocation:
    """All or nothing, each sku from the one warehouse with the most available.

    A line is never split across warehouses, so a shortage reports the best single
    warehouse's `available` (never below zero). Of two warehouses with as much available,
    the first in the order `levels` come in (services locks them by (sku, warehouse)) wins.
    """
    best: dict[str, Level] = {}
    for level in levels:
        current = best.get(level.sku)
        if current is None or level.on_hand - level.reserved > current.on_hand - current.reserved:
            best[level.sku] = level
    shortages = []
    for sku, quantity in sorted(wanted.items()):
        found = best.get(sku)
        units = found.on_hand - found.reserved if found else 0
        if units < quantity:
            shortages.append({"sku": sku, "requested": quantity, "available": max(units, 0)})
    if shortages:
        return Allocation({}, shortages)
    return Allocation({sku: best[sku].warehouse for sku in sorted(wanted)}, [])


def adjusted_on_hand(sku: str, warehouse: str, delta: int, on_hand: int, reserved: int) -> int:
    """The level's on_hand after the adjustment, or Conflict when it may not happen."""
    after = on_hand + delta
    if after < 0 or after < reserved:
        raise Conflict(f"Adjusting {sku} in {warehouse} by {delta} would leave on_hand {after} "
                       f"below reserved {reserved} or zero.", "insufficient-stock")
    if after > LEVEL_MAX:
        raise Conflict(f"Adjusting {sku} in {warehouse} by {delta} would take on_hand to "
                       f"{after}, above the {LEVEL_MAX} a stock level can hold.",
                       "stock-limit-exceeded")
    return after


def low_stock(points: Mapping[str, int], now: Mapping[str, int],
              previously: Mapping[str, int] | None) -> list[dict[str, Any]]:
    """`inventory.stock.low` data for each sku whose available is at or below its reorder
    point (`points`), given available `now` (a sku missing has none).

    With `previously`, only a crossing (above before, at or below now) counts, so a product
    that stays low does not repeat the alert on every movement.
    """
    low = []
    for sku, point in points.items():
        units = now.get(sku, 0)
        was = None if previously is None else previously.get(sku, 0)
        if units <= point and (was is None or was > point):
            low.append({"sku": sku, "available": units, "reorder_point": point})
    return low
