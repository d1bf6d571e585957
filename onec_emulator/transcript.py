"""Transcripts of an exchange: one record per request, and their printed form."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

from onec_emulator.answers import SUCCESS, status_word


@dataclass
class Exchange:
    """One request and its response in a transcript.

    ``status`` is 0 when no response arrived (connection refused, timeout).
    ``answer`` contains the response lines with the status word first.
    """

    method: str
    mode: str
    filename: str | None
    status: int
    bytes_sent: int
    answer: list[str]
    elapsed_ms: float


@dataclass
class ExchangeResult:
    """Outcome of a push, with every request made up to its end."""

    ok: bool
    reason: str
    transcript: list[Exchange]
    sessid: str | None

    def answers(self, mode: str) -> list[list[str]]:
        """Return the response lines of every request of that mode, in order."""
        return [
            exchange.answer for exchange in self.transcript if exchange.mode == mode
        ]


def format_exchange(exchange: Exchange) -> str:
    """Format one request as a transcript line, without cookie values."""
    line = f"{exchange.method} mode={exchange.mode}"
    if exchange.filename is not None:
        line += f" filename={exchange.filename}"
    if exchange.method == "POST":
        line += f" {exchange.bytes_sent} B"
    if exchange.status == 0:
        outcome = "no response"
    else:
        outcome = f"{exchange.status} {_summarize_answer(exchange)}"
    return f"{line} -> {outcome} ({exchange.elapsed_ms:.0f} ms)"


def _summarize_answer(exchange: Exchange, limit: int = 160) -> str:
    answer = exchange.answer
    if not answer:
        return "(empty)"
    if exchange.mode == "checkauth" and answer[0] == SUCCESS:
        # The next lines are the session cookie, which is a credential.
        return SUCCESS
    if exchange.mode == "init" or status_word(answer) is None:
        summary = " ".join(answer)
    elif len(answer) > 1:
        summary = f"{answer[0]}: {' '.join(answer[1:])}"
    else:
        summary = answer[0]
    return summary if len(summary) <= limit else summary[: limit - 3] + "..."


def format_verdict(result: ExchangeResult) -> str:
    """Format the final line of a transcript."""
    if not result.ok:
        return f"exchange failed: {result.reason}"
    posts = [item for item in result.transcript if item.mode == "file"]
    uploaded = {item.filename for item in posts}
    imported = {item.filename for item in result.transcript if item.mode == "import"}
    bytes_sent = sum(item.bytes_sent for item in posts)
    return (
        f"exchange succeeded: {len(uploaded)} files uploaded in {len(posts)} POSTs "
        f"({bytes_sent} B), {len(imported)} files imported"
    )


def print_transcript(result: ExchangeResult, stream: TextIO | None = None) -> None:
    """Print one line per request, then the verdict, to ``stream`` (stdout)."""
    if stream is None:
        stream = sys.stdout
    for exchange in result.transcript:
        print(format_exchange(exchange), file=stream)
    print(format_verdict(result), file=stream)
