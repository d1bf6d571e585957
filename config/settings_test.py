"""Settings for the test suite: its own folder, Redis server and database.

Tests never share the development Redis server or database, so a worker started
with ``make run`` cannot take a test's tasks. ``FREESPORT_TEST_WORKER=1`` makes a
worker process use the test database that pytest-django created.
"""

from __future__ import annotations

import os
from pathlib import Path

from config.embedded_redis import EmbeddedRedis
from config.settings import *  # noqa: F403
from config.settings import BASE_DIR, DATABASES

# Each pytest run gets a folder (database, Redis socket, uploads) of its own, so two
# runs on one machine cannot drop each other's tables. Worker processes started by
# the tests inherit the variable and so use the same folder.
if not os.environ.get("FREESPORT_TEST_VAR_DIR"):
    run_folder = BASE_DIR / "var" / "test" / f"run-{os.getpid()}"
    os.environ["FREESPORT_TEST_VAR_DIR"] = str(run_folder)
VAR_DIR = Path(os.environ["FREESPORT_TEST_VAR_DIR"])
VAR_DIR.mkdir(parents=True, exist_ok=True)
EXCHANGE_ROOT = VAR_DIR / "exchange"
MEDIA_ROOT = VAR_DIR / "media"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

if not os.environ.get("REDIS_URL"):
    EMBEDDED_REDIS = EmbeddedRedis(VAR_DIR / "redis")
    REDIS_URL = EMBEDDED_REDIS.url
    CELERY_BROKER_URL = EMBEDDED_REDIS.broker_url
    CELERY_RESULT_BACKEND = CELERY_BROKER_URL

_database = DATABASES["default"]
if _database["ENGINE"] == "django.db.backends.sqlite3":
    _database["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
if os.environ.get("FREESPORT_TEST_WORKER") == "1":
    _database["NAME"] = (
        _database.get("TEST", {}).get("NAME") or f"test_{_database['NAME']}"
    )
