"""Checks of Russian company requisites: ИНН with its check digits, and КПП."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

# Check-digit weights of the Federal Tax Service: one list for the 10th digit
# of a legal entity's ИНН, two for the 11th and 12th digits of a person's ИНН.
INN10_WEIGHTS = (2, 4, 10, 3, 5, 9, 4, 6, 8)
INN11_WEIGHTS = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
INN12_WEIGHTS = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
# Tax office code (4 digits), reason code (2 digits or capital Latin letters),
# sequence number (3 digits).
KPP_PATTERN = re.compile(r"^[0-9]{4}[0-9A-Z]{2}[0-9]{3}$")


def check_digit(digits: str, weights: tuple[int, ...]) -> int:
    total = sum(
        int(digit) * weight
        for digit, weight in zip(digits[: len(weights)], weights, strict=True)
    )
    return total % 11 % 10


def is_valid_inn(value: str) -> bool:
    """Return whether ``value`` is a 10- or 12-digit ИНН with correct check digits."""
    if not value.isascii() or not value.isdigit():
        return False
    if len(value) == 10:
        return check_digit(value, INN10_WEIGHTS) == int(value[9])
    if len(value) == 12:
        return check_digit(value, INN11_WEIGHTS) == int(value[10]) and check_digit(
            value, INN12_WEIGHTS
        ) == int(value[11])
    return False


def validate_inn(value: str) -> None:
    if not is_valid_inn(value):
        raise ValidationError(
            _("Enter a valid ИНН: 10 digits for a company, 12 for an entrepreneur."),
            code="invalid_inn",
        )


def validate_kpp(value: str) -> None:
    if value and not KPP_PATTERN.match(value):
        raise ValidationError(
            _("Enter a valid КПП: 9 characters, such as 773601001."),
            code="invalid_kpp",
        )
