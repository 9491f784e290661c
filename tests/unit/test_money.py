from __future__ import annotations

import json

import pytest

from qwenedit.domain.money import credits_to_milli, milli_to_wire


@pytest.mark.parametrize(
    ("text", "milli"), [("1", 1000), ("0.5", 500), ("2.125", 2125), ("-3", -3000)]
)
def test_credits_to_milli(text: str, milli: int) -> None:
    assert credits_to_milli(text) == milli


@pytest.mark.parametrize("text", ["abc", "0.0001", "nan", "inf", ""])
def test_bad_credit_amounts(text: str) -> None:
    with pytest.raises(ValueError):
        credits_to_milli(text)


def test_wire_shows_whole_amounts_as_integers() -> None:
    assert json.dumps(milli_to_wire(3000)) == "3"
    assert json.dumps(milli_to_wire(0)) == "0"
    assert json.dumps(milli_to_wire(1500)) == "1.5"
    assert json.dumps(milli_to_wire(125)) == "0.125"
