"""Slots read and written per step, assured slots and unmet needs (the migration safety check)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowkit.flow import load_flow
from flowkit.flow.dataflow import assured, first_read, held, reads, safe_step_before, unmet_needs, writes
from flowkit.flow.model import Flow

FLOWS = Path(__file__).resolve().parents[2] / "examples" / "flows"


@pytest.fixture(scope="module")
def pizza() -> Flow:
    return load_flow(FLOWS / "order_pizza.yaml")


def test_reads_and_writes_per_step(pizza: Flow) -> None:
    assert writes(pizza.steps["ask_qty"]) == {"qty"} and writes(pizza.steps["place_order"]) == {"order_id"}
    assert reads(pizza.steps["place_order"]) == {"size", "qty", "drink", "address"}
    assert reads(pizza.steps["done"]) == {"order_id", "qty", "size"}
    assert reads(pizza.steps["ask_size"]) == frozenset()  # its branch on size reads the answer it just saved
    book = load_flow(FLOWS / "book_appointment.yaml")
    assert writes(book.steps["contact"]) == {"patient", "email"}  # a sub-flow's save, this flow's names
    refund = load_flow(FLOWS / "refund.yaml")
    assert writes(refund.steps["count_try"]) == {"tries"} and "tries" in reads(refund.steps["count_try"])


def test_assured_follows_only_routes_that_carry_the_answer(pizza: Flow) -> None:
    assert assured(pizza, "ask_size") == frozenset()
    assert assured(pizza, "ask_address") == {"size", "qty"}  # drink: only large pizzas are asked
    assert assured(pizza, "handoff") == frozenset()  # on_fail of the size question: no size
    assert assured(pizza, "done") == {"size", "qty", "address", "order_id"}
    assert "order_id" not in assured(pizza, "sorry")  # on_error: the call saved nothing
    assert assured(pizza, "nowhere") == frozenset()


def test_needs_of_a_moved_session(pizza: Flow) -> None:
    assert first_read(pizza, "ask_address", "qty") == "place_order"
    assert first_read(pizza, "ask_qty", "qty") is None  # asked again before anyone reads it
    needs = unmet_needs(pizza, "ask_address", {"size"})
    assert [(n.slot, n.step) for n in needs] == [("qty", "place_order")] and str(needs[0]) == "step 'place_order' reads 'qty'"
    assert unmet_needs(pizza, "ask_address", {"size", "qty"}) == []
    assert unmet_needs(pizza, "ask_qty", {"size"}) == []
    assert safe_step_before(pizza, "ask_address", {"size"}) == "ask_qty"
    assert safe_step_before(pizza, "place_order", set()) == "ask_size"
    assert held({"size": "large", "drink": None, "qty": 2}) == {"size", "qty"}
