"""Import a 1C exchange package through the Celery worker."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from config.celery import app
from freesport.exchange.models import ExchangeSession
from freesport.exchange.summary import summary_lines
from worker.commerceml.package import PackageError
from worker.imports.sessions import create_session, enqueue_import

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_SKIPPED = 2
POLL_INTERVAL_S = 0.5
BAR_WIDTH = 30


class Command(BaseCommand):
    help = (
        "Import a 1C exchange package (directories, XML files or zips) through the "
        "Celery worker and print the summary. Exit code: 0 all imported, 2 items "
        "skipped, 1 failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "paths", nargs="+", type=Path, help="package folders, files or zips"
        )
        parser.add_argument(
            "--json", action="store_true", help="print the summary as JSON"
        )
        parser.add_argument(
            "--no-deactivate",
            action="store_true",
            help="keep goods a full package omits active",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=0,
            help="seconds to wait for the import before giving up (0: no limit)",
        )
        parser.add_argument(
            "--ping-timeout",
            type=float,
            default=3.0,
            help="seconds to wait for a worker to respond before the import starts",
        )

    _last_step = -1

    def handle(self, *args: Any, **options: Any) -> None:
        if not _workers_online(options["ping_timeout"]):
            raise CommandError(
                "No Celery worker responded on the broker. Start one with "
                "`make worker` (or `.venv/bin/celery -A worker.app worker`) and run "
                "this command again."
            )
        try:
            with transaction.atomic():
                session = create_session(
                    options["paths"], deactivate_missing=not options["no_deactivate"]
                )
                enqueue_import(session)
        except PackageError as error:
            raise CommandError(str(error)) from error
        if not options["json"]:
            self.stderr.write(
                f"Exchange session {session.pk}: {session.files.count()} files queued"
            )
        try:
            session = self._wait(
                session, options["timeout"], show_progress=not options["json"]
            )
        except KeyboardInterrupt:
            raise CommandError(
                f"stopped waiting; exchange session {session.pk} goes on in the "
                "worker. Follow it with `python manage.py onec_status`."
            ) from None
        summary = session.summary()
        if options["json"]:
            self.stdout.write(json.dumps(summary, ensure_ascii=False, indent=2))
        else:
            self._print_summary(session)
        sys.exit(_exit_code(session))

    def _wait(
        self, session: ExchangeSession, timeout: float, show_progress: bool
    ) -> ExchangeSession:
        deadline = time.monotonic() + timeout if timeout else None
        interactive = show_progress and self.stderr.isatty()
        while True:
            session.refresh_from_db()
            if interactive or show_progress:
                self._draw(session, interactive)
            if session.is_finished:
                if interactive:
                    self.stderr.write("")
                return session
            if deadline and time.monotonic() > deadline:
                raise CommandError(
                    f"exchange session {session.pk} still {session.status} after "
                    f"{timeout:.0f} s; it goes on in the worker. Check it with "
                    "`python manage.py onec_status`."
                )
            time.sleep(POLL_INTERVAL_S)

    def _draw(self, session: ExchangeSession, interactive: bool) -> None:
        share = session.bytes_done / session.bytes_total if session.bytes_total else 0.0
        share = min(share, 1.0)
        filled = int(share * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        line = f"[{bar}] {share:6.1%} {session.status}"
        if interactive:
            self.stderr.write(f"\r{line}", ending="")
            self.stderr.flush()
            return
        # Without a terminal, one line per tenth keeps logs readable.
        step = int(share * 10)
        if step != self._last_step:
            self._last_step = step
            self.stderr.write(line)

    def _print_summary(self, session: ExchangeSession) -> None:
        for line in summary_lines(session):
            self.stdout.write(line)


def _workers_online(timeout: float) -> bool:
    try:
        return bool(app.control.ping(timeout=timeout, limit=1))
    except Exception:
        return False


def _exit_code(session: ExchangeSession) -> int:
    if session.status == ExchangeSession.Status.SUCCEEDED:
        return EXIT_OK
    if session.status == ExchangeSession.Status.PARTIAL:
        return EXIT_SKIPPED
    return EXIT_FAILED
