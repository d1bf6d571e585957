"""The Celery application shared by the worker, beat, Flower and the shop."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("freesport")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = (
    "worker.tasks.imports",
    "worker.tasks.exports",
    "worker.recovery.tasks",
)
app.conf.beat_schedule = {
    "fail-stale-import-sessions": {
        "task": "worker.tasks.imports.fail_stale_sessions",
        "schedule": 15 * 60.0,
    },
    # Retries kept in the database (broker down, or a delay too long to hold
    # in a worker) are sent to the broker once due.
    "send-due-retries": {
        "task": "worker.recovery.tasks.send_due_retries",
        "schedule": float(os.environ.get("RECOVERY_SEND_INTERVAL_S", "30")),
    },
    "send-unsent-customer-exports": {
        "task": "worker.tasks.exports.send_unsent_customer_exports",
        "schedule": 5 * 60.0,
    },
}
