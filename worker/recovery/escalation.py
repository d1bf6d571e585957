"""E-mail to administrators, at most one per error group per interval.

The limit is a Redis key per group, set with ``SET NX EX``. The first failure of
a group in ``RECOVERY_ESCALATION_INTERVAL_S`` seconds creates the key and sends
the e-mail. Every other failure of the group finds the key and sends nothing,
whichever worker process it runs in. When Redis is unreachable, the integration
log's ``admins_notified_at`` is checked instead, and two processes may then both
send.
"""

from __future__ import annotations

import functools
import logging
import smtplib
from datetime import timedelta

import redis
from django.conf import settings
from django.core.mail import mail_admins
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from freesport.integration.models import IntegrationLog
from worker.recovery.decisions import Failure

logger = logging.getLogger("worker.recovery")

KEY_PREFIX = "freesport:recovery:escalated:"
REDIS_TIMEOUT_S = 2.0


@functools.cache
def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
    )


def interval_s() -> int:
    return max(int(settings.RECOVERY_ESCALATION_INTERVAL_S), 1)


def acquire(fingerprint: str) -> bool:
    """Return True if this failure is the first of its group in the interval."""
    try:
        created = redis_client(settings.REDIS_URL).set(
            KEY_PREFIX + fingerprint,
            timezone.now().isoformat(),
            nx=True,
            ex=interval_s(),
        )
    except redis.RedisError as error:
        logger.warning(
            "Escalation limit for group %s not checked in Redis (%s), so the "
            "integration log is checked instead",
            fingerprint[:12],
            type(error).__name__,
        )
        cutoff = timezone.now() - timedelta(seconds=interval_s())
        return not IntegrationLog.objects.filter(
            fingerprint=fingerprint, admins_notified_at__gte=cutoff
        ).exists()
    return bool(created)


def release(fingerprint: str) -> None:
    """Let the next failure of the group send, because this one's e-mail failed."""
    try:
        redis_client(settings.REDIS_URL).delete(KEY_PREFIX + fingerprint)
    except redis.RedisError:
        pass  # the key expires by itself


def compose(failure: Failure, manual_task_id: int | None) -> tuple[str, str]:
    """Build the subject and body: ids, kinds and the scrubbed message only."""
    group = failure.fingerprint.digest
    subject = _("Integration error in %(operation)s: %(kind)s (group %(group)s)") % {
        "operation": failure.task.operation,
        "kind": failure.kind,
        "group": group[:12],
    }
    lines = [
        _("Operation: %(value)s") % {"value": failure.task.operation},
        _("Error type: %(value)s") % {"value": failure.kind},
        _("Exception: %(value)s") % {"value": failure.fingerprint.parts[2]},
        _("Message: %(value)s") % {"value": failure.message},
        _("Task: %(name)s[%(id)s], attempt %(attempt)d")
        % {
            "name": failure.task.name,
            "id": failure.task.request.id,
            "attempt": failure.attempt,
        },
        _("Object: %(value)s") % {"value": failure.target.object_ref or "-"},
        _("Manual task: %(value)s") % {"value": manual_task_id or "-"},
        _("Error group: %(value)s") % {"value": group},
        "",
        _(
            "Further errors of this group are not mailed for %(minutes)d minutes; "
            "see the integration log and the manual tasks in the admin."
        )
        % {"minutes": max(interval_s() // 60, 1)},
    ]
    return subject, "\n".join(lines)


def notify_admins(failure: Failure, manual_task_id: int | None) -> bool:
    """Mail ``settings.ADMINS`` unless the group was mailed in the interval.

    Return whether an e-mail was sent.
    """
    group = failure.fingerprint.digest
    if not settings.ADMINS:
        logger.warning(
            "ADMINS is empty, so escalated error group %s was not mailed", group[:12]
        )
        return False
    if not acquire(group):
        logger.info("Error group %s was already mailed in the interval", group[:12])
        return False
    with translation.override(settings.LANGUAGE_CODE):
        subject, body = compose(failure, manual_task_id)
    try:
        mail_admins(subject, body, fail_silently=False)
    except (OSError, smtplib.SMTPException) as error:
        release(group)
        logger.error(
            "E-mail about error group %s failed (%s), so the next error of the "
            "group tries again",
            group[:12],
            type(error).__name__,
        )
        return False
    return True
