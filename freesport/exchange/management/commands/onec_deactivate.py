"""Deactivate what a finished full package omitted, on an operator's word."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from freesport.exchange.models import ExchangeSession
from worker.imports.deactivation import DeactivationRefused, deactivate_missing


class Command(BaseCommand):
    help = (
        "Deactivate goods and offers that a finished full package did not contain. "
        "--force applies it even above EXCHANGE_DEACTIVATE_MAX_SHARE."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("session", type=int, help="exchange session id")
        parser.add_argument(
            "--force",
            action="store_true",
            help="ignore the share of active goods limit",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            session = ExchangeSession.objects.get(pk=options["session"])
        except ExchangeSession.DoesNotExist as error:
            raise CommandError(f"no exchange session {options['session']}") from error
        try:
            result = deactivate_missing(session, force=options["force"])
        except DeactivationRefused as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"Exchange session {session.pk}: {result or 'nothing to do'}")
