"""Money: integer milli-credits in storage, plain numbers on the wire (DESIGN §5, §8)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MILLI_PER_CREDIT = 1000


def credits_to_milli(amount: str | int | Decimal) -> int:
    """Parse an amount of credits given by an operator; at most three decimal places."""
    try:
        value = Decimal(str(amount).strip())
    except InvalidOperation as exc:
        raise ValueError(f"{amount!r} is not a number of credits") from exc
    if not value.is_finite():
        raise ValueError(f"{amount!r} is not a number of credits")
    milli = value * MILLI_PER_CREDIT
    if milli != milli.to_integral_value():
        raise ValueError(f"{amount!r} has more than three decimal places")
    return int(milli)


def milli_to_wire(milli: int) -> int | float:
    """Whole amounts as JSON integers, others as decimals with at most three places."""
    whole, rest = divmod(milli, MILLI_PER_CREDIT)
    if rest == 0:
        return whole
    return float(Decimal(milli) / MILLI_PER_CREDIT)


def credits_text(milli: int) -> str:
    """Milli-credits as credits in a message: ``2``, ``1.5``, ``0.001``."""
    return f"{Decimal(milli) / MILLI_PER_CREDIT:f}"
