"""Show the circuit breakers in front of 1C, or force one open, closed or reset."""

from __future__ import annotations

import json
from typing import Any

import redis
from django.core.management.base import BaseCommand, CommandError, CommandParser

from freesport.breakers import services
from freesport.breakers.services import view_as_dict
from worker.recovery.circuit_config import check_name

ACTION_DONE = {
    "open": "forced open; calls are rejected until it is closed or reset",
    "close": "forced closed; failures are not counted until it is reset",
    "reset": "reset: closed, counters cleared, no operator hold",
}


class Command(BaseCommand):
    help = (
        "Show the state of the circuit breakers in front of 1C (status [NAME ...]), "
        "or force one open (open NAME), closed (close NAME) or reset it (reset NAME)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "action",
            choices=["status", *services.ACTIONS],
            help="status: show states; open/close: hold a breaker open or closed; "
            "reset: close it and return it to automatic operation",
        )
        parser.add_argument(
            "names",
            nargs="*",
            metavar="NAME",
            help="breaker name; status without a name lists every known breaker",
        )
        parser.add_argument(
            "--json", action="store_true", help="print the states as JSON"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        action: str = options["action"]
        names: list[str] = options["names"]
        for name in names:
            try:
                check_name(name)
            except ValueError as error:
                raise CommandError(str(error)) from error
        try:
            if action == "status":
                self._status(names or None, as_json=options["json"])
            else:
                self._force(action, names, as_json=options["json"])
        finally:
            services.close_control_board()

    def _status(self, names: list[str] | None, *, as_json: bool) -> None:
        statuses = services.breaker_statuses(names)
        failed = [status for status in statuses if status.view is None]
        rows = [
            view_as_dict(status.name, status.view)
            for status in statuses
            if status.view is not None
        ]
        if as_json:
            errors = [{"name": s.name, "error": s.error} for s in failed]
            self.stdout.write(
                json.dumps({"breakers": rows, "errors": errors}, indent=2)
            )
        else:
            self._print(rows)
        if failed:
            details = "; ".join(f"{s.name or 'listing'}: {s.error}" for s in failed)
            raise CommandError(f"could not read every breaker from Redis: {details}")

    def _print(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            self.stdout.write("No circuit breaker has been used yet.")
            return
        width = max(len(row["name"]) for row in rows)
        for row in rows:
            forced = f" (forced {row['forced']})" if row["forced"] else ""
            until = f" until {row['retry_at']}" if row["retry_at"] else ""
            self.stdout.write(
                f"{row['name']:<{width}}  {row['state']}{forced}{until}  "
                f"failures={row['failures']} trials={row['trials']} "
                f"changed {row['changed_at']}"
            )

    def _force(self, action: str, names: list[str], *, as_json: bool) -> None:
        if len(names) != 1:
            raise CommandError(f"{action} needs exactly one breaker NAME")
        name = names[0]
        try:
            view = services.apply_action(name, action, actor="command")
        except redis.RedisError as error:
            raise CommandError(
                f"circuit breaker {name} was not changed, because Redis is "
                f"unavailable: {services.describe(error)}"
            ) from error
        if as_json:
            self.stdout.write(json.dumps(view_as_dict(name, view), indent=2))
        else:
            self.stdout.write(f"Circuit breaker {name} {ACTION_DONE[action]}.")
