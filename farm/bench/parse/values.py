"""Numbers as the tool prints them: kept exact, never raising on odd text."""

from __future__ import annotations

import re
from decimal import Decimal

Number = int | float

NUM_TOKEN = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_INT = re.compile(r"[-+]?\d+")


def num(text: str) -> Number | None:
    """A number exactly as printed: int when integral in the text, else float; None if not one."""
    if len(text) > 64:
        return None
    if text.isdecimal():  # what int() accepts; isdigit() would let "²" through
        return int(text)
    text = text.rstrip("%,;")
    if _INT.fullmatch(text):
        return int(text)
    if NUM_TOKEN.fullmatch(text) or text.lower().lstrip("+-") in ("nan", "inf"):
        return float(text)
    return None


def ms_to_us(text: str) -> Number | None:
    """Milliseconds as printed → µs, without binary rounding noise; None if not a number."""
    if len(text) > 64:
        return None
    try:
        value = Decimal(text) * 1000
    except ArithmeticError:  # decimal's InvalidOperation, Overflow
        return None
    if not value.is_finite():
        return None
    if value.adjusted() > 18:
        return float(value)
    return int(value) if value == value.to_integral_value() else float(value)


def is_true(value: str | None) -> bool:
    """Whether a flag value means yes (1, true, yes)."""
    return value is not None and value.strip().lower() in ("1", "true", "yes")
