"""Parsing of the site's text/plain responses in the 1C site-exchange protocol.

The first line of a response is ``success``, ``progress`` or ``failure``, and the
lines after it carry a reason or ``key=value`` settings. ``mode=init`` is the
exception: its response may start directly with ``key=value`` lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.message import Message

SUCCESS = "success"
PROGRESS = "progress"
FAILURE = "failure"
STATUS_WORDS = (SUCCESS, PROGRESS, FAILURE)

# Sites that run in windows-1251 may respond without declaring a charset.
FALLBACK_ENCODING = "windows-1251"
BYTE_ORDER_MARK = "\ufeff"


def decode_body(body: bytes, content_type: str | None) -> str:
    """Decode a response body: declared charset, else UTF-8, else windows-1251.

    A leading byte order mark is dropped.
    """
    charset = _declared_charset(content_type)
    text: str | None = None
    if charset is not None:
        try:
            text = body.decode(charset, errors="replace")
        except LookupError:
            text = None
    if text is None:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = body.decode(FALLBACK_ENCODING, errors="replace")
    return text.removeprefix(BYTE_ORDER_MARK)


def _declared_charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    message = Message()
    message["Content-Type"] = content_type
    return message.get_content_charset()


def split_lines(text: str) -> list[str]:
    """Split a response into stripped lines, without leading or trailing blank lines.

    NOTE: blank lines and spaces around the response are tolerated here. Some 1C
    builds may reject such responses, so a passing emulator run does not prove
    that real 1C accepts them.
    """
    return [line.strip() for line in text.strip().splitlines()]


def status_word(lines: Sequence[str]) -> str | None:
    """Return the status word on the first line, or None when there is none."""
    if lines and lines[0] in STATUS_WORDS:
        return lines[0]
    return None


def is_setting(line: str) -> bool:
    """Tell whether a line has the ``key=value`` form of a setting."""
    key, separator, _ = line.partition("=")
    return bool(separator) and bool(key.strip())


def parse_settings(lines: Sequence[str]) -> dict[str, str]:
    """Map the ``key=value`` lines to a dict with lowercase keys; skip other lines.

    When a key repeats, the last line wins.
    """
    settings: dict[str, str] = {}
    for line in lines:
        if not is_setting(line):
            continue
        key, _, value = line.partition("=")
        settings[key.strip().lower()] = value.strip()
    return settings


def reason_text(lines: Sequence[str]) -> str:
    """Join the lines after the status word into one reason text."""
    reason = "\n".join(line for line in lines[1:] if line)
    return reason or "no reason given"


def preview(text: str, limit: int = 80) -> str:
    """Quote the start of a body for an error message."""
    if not text.strip():
        return "body is empty"
    start = text.lstrip()[:limit]
    suffix = "..." if len(text.lstrip()) > limit else ""
    return f"body starts with {start!r}{suffix}"
