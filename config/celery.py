"""The Celery application shared by the worker, beat, Flower and the shop."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("freesport")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = ("worker.tasks.imports",)
app.conf.beat_schedule = {
    "fail-stale-import-sessions": {
        "task": "worker.tasks.imports.fail_stale_sessions",
        "schedule": 15 * 60.0,
    },
}
