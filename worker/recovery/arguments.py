"""Checks that integration tasks get record ids, never payloads, as arguments."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

UUID_PATTERN = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


class InvalidTaskArguments(TypeError):
    """A task got something other than record ids as arguments."""


def is_record_id(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | uuid.UUID):
        return True
    return isinstance(value, str) and bool(UUID_PATTERN.match(value))


def check_id_arguments(
    task_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> None:
    """Raise ``InvalidTaskArguments`` unless every argument is a record id.

    The message names the position or keyword and the type, never the value.
    """
    for position, value in enumerate(args):
        if not is_record_id(value):
            raise InvalidTaskArguments(
                f"{task_name} takes record ids only (integers or UUIDs), but "
                f"argument {position} is a {type(value).__name__}; pass the id of a "
                "row and load the data in the task"
            )
    for name, value in kwargs.items():
        if not is_record_id(value):
            raise InvalidTaskArguments(
                f"{task_name} takes record ids only (integers or UUIDs), but "
                f"argument {name!r} is a {type(value).__name__}; pass the id of a "
                "row and load the data in the task"
            )
