"""Background work: Celery tasks, CommerceML reading and writing, recovery.

The Celery entry point is ``worker.app`` (``celery -A worker.app worker``); the
packages below it import nothing from Django at import time unless they need it.
"""
