"""Operator actions on manual tasks: replay, edit and retry, resolve, discard.

A replay claims the task with a conditional UPDATE from "open" to "in
progress", so of two concurrent replays only one sends the Celery task. The
replayed run carries a new task id, which is stored on the manual task. When
that run succeeds the task is resolved, and when it fails again it is reopened. Every
action is written to ``ManualTaskAudit``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ObjectDoesNotExist
from django.db import models, transaction
from django.db.models import F
from django.utils import timezone

from freesport.integration.models import IntegrationLog, ManualTask, ManualTaskAudit
from freesport.integration.scrubbing import scrub

logger = logging.getLogger("freesport.integration")

# Models name the fields an operator may edit before a retry in this attribute.
EDITABLE_FIELDS_ATTRIBUTE = "MANUAL_TASK_EDITABLE_FIELDS"

User = AbstractBaseUser | AnonymousUser | None


class ManualTaskError(Exception):
    """An action that the manual task's state or object does not allow."""


def object_reference(instance: models.Model) -> str:
    """Return "app_label.model_name:pk", the readable reference of a row."""
    meta = instance._meta
    return f"{meta.app_label}.{meta.model_name}:{instance.pk}"


def content_type_of(instance: models.Model) -> ContentType:
    """Return the row's content type, read from the database.

    ``ContentType.objects.get_for_model`` reads a process-wide cache, and
    a long-running worker must not keep an id that a flush or migration replaced.
    """
    meta = instance._meta
    content_type, _ = ContentType.objects.get_or_create(
        app_label=meta.app_label, model=meta.model_name
    )
    return content_type


def _user_or_none(user: User) -> Any:
    if user is None or not user.is_authenticated:
        return None
    return user


def record(
    task: ManualTask,
    action: str,
    *,
    user: User = None,
    changes: Mapping[str, Any] | None = None,
    note: str = "",
) -> ManualTaskAudit:
    return ManualTaskAudit.objects.create(
        manual_task=task,
        action=action,
        user=_user_or_none(user),
        changes=dict(changes or {}),
        note=note[:500],
    )


def open_for_failure(
    *,
    replayed_task_id: str,
    content_object: models.Model | None,
    defaults: Mapping[str, Any],
) -> tuple[ManualTask, bool]:
    """Create a manual task for a failed run, or reopen the one it replayed.

    Return the task and whether it was created.
    """
    if replayed_task_id:
        reopened = ManualTask.objects.filter(
            replay_task_id=replayed_task_id, state=ManualTask.State.IN_PROGRESS
        ).first()
        if reopened is not None:
            for name, value in defaults.items():
                setattr(reopened, name, value)
            reopened.state = ManualTask.State.OPEN
            reopened.save()
            record(reopened, ManualTaskAudit.Action.REOPENED, note=reopened.error)
            return reopened, False
    task = ManualTask(**defaults)
    if content_object is not None:
        task.content_type = content_type_of(content_object)
        task.object_id = str(content_object.pk)
        task.object_ref = object_reference(content_object)
    task.save()
    record(task, ManualTaskAudit.Action.CREATED, note=task.error)
    return task, True


def settle_replay(replayed_task_id: str, *, succeeded: bool, note: str = "") -> bool:
    """Resolve or reopen the manual task whose replay ran as ``replayed_task_id``.

    Return False when no manual task was waiting for that run.
    """
    if not replayed_task_id:
        return False
    task = ManualTask.objects.filter(
        replay_task_id=replayed_task_id, state=ManualTask.State.IN_PROGRESS
    ).first()
    if task is None:
        return False
    now = timezone.now()
    if succeeded:
        changed = ManualTask.objects.filter(
            pk=task.pk, state=ManualTask.State.IN_PROGRESS
        ).update(state=ManualTask.State.RESOLVED, resolved_at=now, updated_at=now)
        action = ManualTaskAudit.Action.REPLAY_SUCCEEDED
        if changed and task.integration_log_id is not None:
            IntegrationLog.objects.filter(pk=task.integration_log_id).update(
                status=IntegrationLog.Status.RECOVERED,
                resolved_at=now,
                updated_at=now,
                result=f"manual task {task.pk} replayed successfully",
            )
    else:
        changed = ManualTask.objects.filter(
            pk=task.pk, state=ManualTask.State.IN_PROGRESS
        ).update(state=ManualTask.State.OPEN, updated_at=now)
        action = ManualTaskAudit.Action.REOPENED
    if changed:
        record(task, action, note=note)
    return bool(changed)


def replay(task: ManualTask, *, user: User = None) -> bool:
    """Send the task's Celery task again, unless a replay is already running.

    Return False, and record the rejection, when the task was not open. The
    message is sent after the surrounding transaction commits. If the broker
    rejects it, the task goes back to open and the failure is recorded.
    """
    replay_id = str(uuid.uuid4())
    now = timezone.now()
    with transaction.atomic():
        claimed = ManualTask.objects.filter(
            pk=task.pk, state=ManualTask.State.OPEN
        ).update(
            state=ManualTask.State.IN_PROGRESS,
            replay_task_id=replay_id,
            replay_count=F("replay_count") + 1,
            updated_at=now,
        )
        if not claimed:
            record(task, ManualTaskAudit.Action.REPLAY_REJECTED, user=user)
            return False
        record(task, ManualTaskAudit.Action.REPLAY_STARTED, user=user, note=replay_id)
        task_name, args, queue = task.task_name, list(task.task_args), task.queue
        transaction.on_commit(
            lambda: _send_replay(task.pk, task_name, args, queue, replay_id)
        )
    return True


def _send_replay(
    task_pk: int, task_name: str, args: list[Any], queue: str, replay_id: str
) -> None:
    from kombu.exceptions import OperationalError

    from config.celery import app

    try:
        app.send_task(task_name, args=args, task_id=replay_id, queue=queue or None)
    except OperationalError as error:
        logger.error(
            "Replay of manual task %d could not be sent (%s), so the task is open "
            "again",
            task_pk,
            type(error).__name__,
        )
        reopened = ManualTask.objects.filter(
            pk=task_pk, replay_task_id=replay_id, state=ManualTask.State.IN_PROGRESS
        ).update(state=ManualTask.State.OPEN, updated_at=timezone.now())
        if reopened:
            record(
                ManualTask(pk=task_pk),
                ManualTaskAudit.Action.REOPENED,
                note="the broker rejected the replay; try again later",
            )
        return
    logger.info("Replay of manual task %d sent as task %s", task_pk, replay_id)


def editable_fields(instance: models.Model) -> tuple[str, ...]:
    return tuple(getattr(instance, EDITABLE_FIELDS_ATTRIBUTE, ()))


def locked_object(task: ManualTask) -> models.Model:
    """Return the task's object, locked for update, or raise if it is gone."""
    if task.content_type is None or not task.object_id:
        raise ManualTaskError(f"manual task {task.pk} refers to no editable object")
    model = task.content_type.model_class()
    if model is None:
        raise ManualTaskError(f"the model of manual task {task.pk} no longer exists")
    try:
        return model._default_manager.select_for_update().get(pk=task.object_id)
    except ObjectDoesNotExist as error:
        raise ManualTaskError(
            f"{task.object_ref} of manual task {task.pk} was deleted, so discard "
            "the task"
        ) from error


def edit_and_retry(
    task: ManualTask, changes: Mapping[str, Any], *, user: User = None
) -> bool:
    """Save operator changes to the task's object, audit them, then replay the task.

    Only fields the model lists in ``MANUAL_TASK_EDITABLE_FIELDS`` may change.
    Return what ``replay`` returns.
    """
    with transaction.atomic():
        current = ManualTask.objects.select_for_update().get(pk=task.pk)
        if current.state != ManualTask.State.OPEN:
            raise ManualTaskError(
                f"manual task {task.pk} is {current.state}, but only open tasks can "
                "be edited"
            )
        instance = locked_object(current)
        allowed = editable_fields(instance)
        unknown = sorted(set(changes) - set(allowed))
        if unknown:
            raise ManualTaskError(
                f"fields {', '.join(unknown)} cannot be edited. Editable fields: "
                f"{', '.join(allowed) or 'none'}"
            )
        diff: dict[str, dict[str, Any]] = {}
        for name, value in changes.items():
            before = getattr(instance, name)
            if before != value:
                diff[name] = {"before": before, "after": value}
                setattr(instance, name, value)
        if diff:
            instance.full_clean()
            instance.save(update_fields=list(diff))
        # Personal fields (ИНН, phone, e-mail, names) keep only their names.
        record(current, ManualTaskAudit.Action.EDITED, user=user, changes=scrub(diff))
    return replay(current, user=user)


def close(tasks: Iterable[ManualTask], state: str, *, user: User = None) -> int:
    """Mark open tasks resolved or discarded, and return how many changed."""
    if state not in (ManualTask.State.RESOLVED, ManualTask.State.DISCARDED):
        raise ValueError(f"invalid closing state {state!r}: use resolved or discarded")
    action = (
        ManualTaskAudit.Action.RESOLVED
        if state == ManualTask.State.RESOLVED
        else ManualTaskAudit.Action.DISCARDED
    )
    changed = 0
    now = timezone.now()
    for task in tasks:
        with transaction.atomic():
            updated = ManualTask.objects.filter(
                pk=task.pk, state=ManualTask.State.OPEN
            ).update(
                state=state,
                resolved_at=now,
                resolved_by=_user_or_none(user),
                updated_at=now,
            )
            if updated:
                record(task, action, user=user)
                changed += 1
    return changed


def open_in_groups(fingerprints: Iterable[str]) -> models.QuerySet[ManualTask]:
    """Return the open tasks of the given error groups."""
    return ManualTask.objects.filter(
        fingerprint__in=set(fingerprints), state=ManualTask.State.OPEN
    )
