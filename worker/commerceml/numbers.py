"""Numbers as 1C writes them: ``1 234,50``, ``1234.5``, ``-999 999 999,9``."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

# 1C writes this value for a number that was never filled in.
SENTINEL = Decimal("-999999999.9")
_SEPARATORS = str.maketrans("", "", " \u00a0\u202f\u2009\t")


class NumberFormatError(ValueError):
    """A value that is not a number in any of the forms 1C writes."""


def parse_decimal(text: str | None) -> Decimal | None:
    """Parse a 1C number; return None for an empty value or the 1C sentinel.

    Spaces, no-break spaces and thin spaces are group separators; a comma or a
    point is the decimal separator. Raises NumberFormatError for anything else.
    """
    if text is None:
        return None
    cleaned = text.translate(_SEPARATORS).replace(",", ".")
    if not cleaned:
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise NumberFormatError(f"{text!r} is not a number") from None
    if not value.is_finite():
        raise NumberFormatError(f"{text!r} is not a finite number")
    if value == SENTINEL:
        return None
    return value
