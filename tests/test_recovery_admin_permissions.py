"""Manual-task admin actions and edit-and-retry need the change permission."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from freesport.integration.models import ManualTask


@pytest.fixture
def viewer(db: None) -> Client:
    user = User.objects.create_user("viewer", password="viewer-pass-1", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_manualtask"))
    client = Client()
    client.force_login(user)
    return client


def _task() -> ManualTask:
    return ManualTask.objects.create(
        operation="export_customers",
        task_name="worker.tasks.exports.export_customer",
        fingerprint="f" * 64,
    )


def test_edit_and_retry_needs_change_permission(viewer: Client) -> None:
    task = _task()

    response = viewer.get(
        reverse("admin:integration_manualtask_edit_and_retry", args=[task.pk])
    )

    assert response.status_code == 403


def test_replay_action_hidden_without_change_permission(viewer: Client) -> None:
    _task()

    response = viewer.get(reverse("admin:integration_manualtask_changelist"))

    assert response.status_code == 200
    # No action is allowed, so the admin renders no action form at all.
    assert response.context["action_form"] is None
