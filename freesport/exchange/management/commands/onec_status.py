"""Report Redis, the database, the Celery workers and the last exchange sessions."""

from __future__ import annotations

import json
import sys
from typing import Any

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

from config.celery import app
from freesport.breakers.services import breaker_report
from freesport.exchange.models import ExchangeSession


class Command(BaseCommand):
    help = "Show whether Redis, the database and workers are up, and the last sessions."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json", action="store_true", help="print the report as JSON"
        )
        parser.add_argument(
            "--sessions", type=int, default=5, help="how many sessions to list"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report: dict[str, Any] = {
            "redis": _redis_status(),
            "database": _database_status(),
            "workers": _workers(),
            "sessions": _sessions(options["sessions"]),
            "breakers": breaker_report(),
        }
        healthy = report["redis"]["ok"] and report["database"]["ok"]
        if options["json"]:
            self.stdout.write(
                json.dumps(report, ensure_ascii=False, indent=2, default=str)
            )
        else:
            self._print(report)
        sys.exit(0 if healthy else 1)

    def _print(self, report: dict[str, Any]) -> None:
        write = self.stdout.write
        redis_state = report["redis"]
        state = "ok" if redis_state["ok"] else "DOWN"
        write(f"Redis:    {state} {redis_state['url']} {redis_state.get('error', '')}")
        database = report["database"]
        state = "ok" if database["ok"] else "DOWN"
        write(f"Database: {state} {database['vendor']} {database.get('error', '')}")
        workers = report["workers"]
        write(f"Workers:  {len(workers)} online {' '.join(workers)}")
        write("Circuit breakers:")
        for row in report["breakers"]:
            if row.get("error"):
                write(f"  {row.get('name') or '(all)'}: {row['error']}")
                continue
            forced = f" (forced {row['forced']})" if row.get("forced") else ""
            until = f" until {row['retry_at']}" if row.get("retry_at") else ""
            write(
                f"  {row['name']}: {row['state']}{forced} "
                f"failures={row.get('failures', 0)}{until}"
            )
        write("Last exchange sessions:")
        for row in report["sessions"]:
            created = f"{row['created_at']:%Y-%m-%d %H:%M}"
            write(
                f"  #{row['id']} {row['status']:<10} {created} "
                f"problems={row['problems']} {row['package']}"
            )


def _redis_status() -> dict[str, Any]:
    url = settings.REDIS_URL
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        info = client.info("server")
        return {"ok": True, "url": _safe_url(url), "version": info.get("redis_version")}
    except redis.RedisError as error:
        return {"ok": False, "url": _safe_url(url), "error": str(error)}
    finally:
        client.close()


def _safe_url(url: str) -> str:
    """Return the URL without a password."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url


def _database_status() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True, "vendor": connection.vendor}
    except Exception as error:
        return {"ok": False, "vendor": connection.vendor, "error": str(error)}


def _workers() -> list[str]:
    try:
        replies = app.control.ping(timeout=1.0) or []
    except Exception:
        return []
    return sorted(name for reply in replies for name in reply)


def _sessions(limit: int) -> list[dict[str, Any]]:
    try:
        rows = ExchangeSession.objects.order_by("-created_at")[:limit]
        return [
            {
                "id": s.pk,
                "status": s.status,
                "package": s.package,
                "created_at": s.created_at,
                "finished_at": s.finished_at,
                "counts": s.counts,
                "problems": s.problems.count(),
            }
            for s in rows
        ]
    except Exception:
        return []
