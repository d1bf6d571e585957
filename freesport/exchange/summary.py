"""The text summary of an exchange session, as the commands print it."""

from __future__ import annotations

from freesport.exchange.models import ExchangeSession

SHOWN_PROBLEMS = 10


def summary_lines(session: ExchangeSession) -> list[str]:
    """Return the session's status, counts per entity, problems and timing."""
    lines = [
        f"Exchange session {session.pk}: {session.status}",
        f"{'entity':<18}{'created':>9}{'updated':>9}{'unchanged':>11}{'skipped':>9}",
    ]
    for entity, row in session.counts.items():
        lines.append(
            f"{entity:<18}{row.get('created', 0):>9}{row.get('updated', 0):>9}"
            f"{row.get('unchanged', 0):>11}{row.get('skipped', 0):>9}"
        )
    for entity, count in session.deactivated.items():
        lines.append(f"deactivated {entity}: {count}")
    problems = session.problems.count()
    if problems:
        lines.append(f"{problems} problems recorded; the first ones:")
        for problem in session.problems.all()[:SHOWN_PROBLEMS]:
            where = f"{problem.file}:{problem.line}" if problem.line else problem.file
            lines.append(
                f"  {where} {problem.code} {problem.external_id} {problem.message}"
            )
        lines.append("All of them are in the admin under Import problems.")
    if session.error:
        lines.append(f"error: {session.error}")
    if session.duration_s is not None:
        lines.append(f"took {session.duration_s:.1f} s")
    return lines
