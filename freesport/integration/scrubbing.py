"""Removal of personal data and secrets from what the integration log stores.

Two rules apply. A value whose key is on the denylist (names, phones, e-mails,
ИНН, КПП, bank details, addresses, passwords, tokens) is replaced with
``FILTERED``, whatever it contains. Every other string is searched for e-mail
addresses, phone numbers and runs of 9 to 20 digits (ИНН, КПП, БИК, ОГРН,
account numbers). It is also searched for the exact values the caller passes as
personal, such as the customer's name. Each match is replaced with ``FILTERED``.

A person's name inside free text is found only when the caller passes it in
``known``: no pattern can tell a surname from any other word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

FILTERED = "[Filtered]"

# Keys compared after normalize_key(): lowercase, with everything but letters
# and digits removed, so "Contact-Person", "contact_person" and "contactPerson"
# are the same key.
DENYLIST_KEYS = frozenset(
    {
        # Names of people and companies.
        "name", "fullname", "firstname", "lastname", "middlename", "patronymic",
        "surname", "companyname", "officialname", "legalname", "contactperson",
        "contactname", "representative",
        "наименование", "полноенаименование", "официальноенаименование",
        "фамилия", "имя", "отчество", "контактноелицо", "представитель",
        # Tax and registration numbers.
        "inn", "kpp", "ogrn", "ogrnip", "okpo", "snils", "passport", "taxid",
        "инн", "кпп", "огрн", "окпо", "снилс", "паспорт",
        # Bank details.
        "bik", "bic", "iban", "swift", "бик",
        # Contacts.
        "contacts", "контакты", "контакт", "представление", "значение",
        # Credentials.
        "authorization", "cookie", "sessionid", "csrftoken", "apikey",
    }
)  # fmt: skip
# A key containing any of these parts is on the denylist too.
DENYLIST_KEY_PARTS = (
    "password", "passwd", "secret", "token", "phone", "email", "mail",
    "address", "account", "пароль", "телефон", "почта", "адрес", "счет", "счёт",
)  # fmt: skip

EMAIL_PATTERN = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Russian numbers such as "+7 (912) 345-67-89" or "89123456789", and any
# "+<country code>..." number of 8 to 15 digits.
PHONE_PATTERNS = (
    re.compile(
        r"(?<![\w+])(?:\+7|8)[\s-]?\(?\d{3}\)?[\s-]?\d{3}[\s-]?\d{2}[\s-]?\d{2}(?!\w)"
    ),
    re.compile(r"(?<![\w+])\+\d[\d\s().-]{6,}\d(?!\w)"),
)
# ИНН (10 or 12 digits), КПП and БИК (9), ОГРН (13, 15), СНИЛС (11), bank
# accounts (20). A КПП may carry two letters in the 5th and 6th places.
NUMBER_PATTERNS = (
    re.compile(r"(?<!\d)\d{9,20}(?!\d)"),
    re.compile(r"(?<![\w])\d{4}[0-9A-Z]{2}\d{3}(?![\w])"),
)
# Integers from 9 digits up could be an ИНН, a КПП or an account number.
MIN_FILTERED_INTEGER = 10**8
# Known values shorter than this are not searched for: they would match
# ordinary words and numbers.
MIN_KNOWN_VALUE_LENGTH = 3


def normalize_key(key: object) -> str:
    return "".join(char for char in str(key).lower() if char.isalnum())


def is_denylisted(key: object) -> bool:
    normalized = normalize_key(key)
    if normalized in DENYLIST_KEYS:
        return True
    return any(part in normalized for part in DENYLIST_KEY_PARTS)


def known_values(values: Iterable[object]) -> tuple[str, ...]:
    """Return the searchable personal values, longest first.

    Longest first, so that "Ivan Petrov" is replaced before "Ivan".
    """
    strings = {str(value).strip() for value in values if value is not None}
    searchable = [value for value in strings if len(value) >= MIN_KNOWN_VALUE_LENGTH]
    return tuple(sorted(searchable, key=len, reverse=True))


def scrub_text(text: str, known: Iterable[object] = ()) -> str:
    """Replace known personal values, e-mails, phones and long numbers in ``text``."""
    for value in known_values(known):
        text = re.sub(re.escape(value), FILTERED, text, flags=re.IGNORECASE)
    text = EMAIL_PATTERN.sub(FILTERED, text)
    for pattern in (*PHONE_PATTERNS, *NUMBER_PATTERNS):
        text = pattern.sub(FILTERED, text)
    return text


def scrub(value: Any, known: Iterable[object] = ()) -> Any:
    """Return a copy of ``value`` with denylisted keys and personal values filtered.

    Mappings, lists and tuples are walked. Other non-string scalars are kept,
    except integers long enough to be an ИНН or an account number.
    """
    known = known_values(known)
    return _scrub(value, known)


def _scrub(value: Any, known: tuple[str, ...]) -> Any:
    if isinstance(value, Mapping):
        return {
            key: FILTERED if is_denylisted(key) else _scrub(item, known)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(item, known) for item in value]
    if isinstance(value, str):
        return scrub_text(value, known)
    if isinstance(value, int) and not isinstance(value, bool):
        return FILTERED if abs(value) >= MIN_FILTERED_INTEGER else value
    return value
