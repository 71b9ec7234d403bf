"""Inventory's stock rules on their own (inventory.stock): no database, no Flask."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

from fleet_shared.domain import Conflict
from inventory import stock
from inventory.models import LEVEL_MAX


@dataclass(frozen=True)
class Level:
    sku: str
    warehouse: str
    on_hand: int
    reserved: int = 0


# --- what a reservation takes ---------------------------------------------------------------

def test_a_sku_asked_for_on_several_lines_is_asked_for_once() -> None:
    assert stock.wanted([{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1},
                         {"sku": "A", "quantity": "3"}]) == {"A": 5, "B": 1}


def test_available_sums_every_warehouse_of_a_sku() -> None:
    levels = [Level("A", "ams", 10, 4), Level("A", "ber", 3), Level("B", "ams", 2, 2)]
    assert stock.available(levels) == {"A": 9, "B": 0}


def test_each_sku_comes_from_the_warehouse_with_the_most_available() -> None:
    levels = [Level("A", "ams", 100, 95),  # the most on hand, but only 5 available
              Level("A", "ber", 8),
              Level("B", "ams", 4), Level("B", "ber", 4)]  # a tie: the first one
    allocation = stock.allocate({"A": 6, "B": 4}, levels)
    assert allocation.warehouses == {"A": "ber", "B": "ams"}
    assert allocation.shortages == []


def test_a_line_takes_exactly_what_is_available() -> None:
    allocation = stock.allocate({"A": 8}, [Level("A", "ams", 10, 2)])
    assert allocation.warehouses == {"A": "ams"}


def test_one_short_line_reserves_nothing_and_says_what_is_short() -> None:
    levels = [Level("A", "ams", 10), Level("B", "ams", 3), Level("B", "ber", 3),
              Level("D", "ams", 1, 1)]
    allocation = stock.allocate({"D": 1, "A": 1, "B": 5, "C": 2}, levels)
    assert allocation.warehouses == {}  # all or nothing: A fits, and is not taken either
    # In sku order; a line is never split, so B reports its best warehouse's 3, not 6.
    assert allocation.shortages == [
        {"sku": "B", "requested": 5, "available": 3},
        {"sku": "C", "requested": 2, "available": 0},  # no stock level at all
        {"sku": "D", "requested": 1, "available": 0},
    ]


def test_a_shortage_never_reports_less_than_nothing() -> None:
    allocation = stock.allocate({"A": 1}, [Level("A", "ams", 1, 3)])
    assert allocation.shortages == [{"sku": "A", "requested": 1, "available": 0}]


# --- adjustments ------------------------------------------------------------------------------

@pytest.mark.parametrize(("delta", "on_hand", "reserved", "after"), [
    (5, 10, 0, 15), (-4, 10, 6, 6), (-10, 10, 0, 0), (LEVEL_MAX - 10, 10, 0, LEVEL_MAX)])
def test_an_adjustment_moves_on_hand(delta: int, on_hand: int, reserved: int,
                                     after: int) -> None:
    assert stock.adjusted_on_hand("A", "ams", delta, on_hand, reserved) == after


@pytest.mark.parametrize(("delta", "on_hand", "reserved"), [
    (-5, 10, 6),  # below what is reserved
    (-11, 10, 0),  # below zero
])
def test_an_adjustment_never_leaves_less_than_is_reserved(delta: int, on_hand: int,
                                                          reserved: int) -> None:
    with pytest.raises(Conflict) as raised:
        stock.adjusted_on_hand("WIDGET-1", "ams-1", delta, on_hand, reserved)
    assert raised.value.kind == "insufficient-stock"
    assert "WIDGET-1" in raised.value.detail and "ams-1" in raised.value.detail


def test_an_adjustment_never_overflows_a_level() -> None:
    with pytest.raises(Conflict) as raised:
        stock.adjusted_on_hand("WIDGET-1", "ams-1", 11, LEVEL_MAX - 10, 0)
    assert raised.value.kind == "stock-limit-exceeded"
    assert str(LEVEL_MAX) in raised.value.detail


# --- low stock --------------------------------------------------------------------------------

def test_low_stock_without_history_is_anything_at_or_below_the_point() -> None:
    low = stock.low_stock({"A": 5, "B": 5, "C": 5, "D": 0}, {"A": 5, "B": 4, "C": 6},
                          previously=None)
    assert low == [{"sku": "A", "available": 5, "reorder_point": 5},
                   {"sku": "B", "available": 4, "reorder_point": 5},
                   {"sku": "D", "available": 0, "reorder_point": 0}]  # no stock: none available


def test_with_history_only_a_crossing_is_low_stock() -> None:
    points = {"crosses": 5, "stays-low": 5, "was-at-point": 5, "stays-high": 5, "new": 5}
    now = {"crosses": 5, "stays-low": 2, "was-at-point": 4, "stays-high": 6, "new": 0}
    before = {"crosses": 6, "stays-low": 3, "was-at-point": 5, "stays-high": 9}
    assert stock.low_stock(points, now, before) == [
        {"sku": "crosses", "available": 5, "reorder_point": 5}]


# --- no framework -----------------------------------------------------------------------------

def test_the_rules_need_no_flask() -> None:
    code = ("import sys, inventory.services, inventory.stock; "
            "sys.exit('flask' in sys.modules or 'werkzeug' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
