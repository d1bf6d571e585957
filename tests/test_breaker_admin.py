"""Operators' view of the circuit breakers: command, admin page and /metrics."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
import redis
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from freesport.breakers import services
from freesport.breakers.models import BreakerTransition
from freesport.breakers.recorder import TransitionRecorder
from tests.test_breaker_helpers import unique_name, wait_for
from worker.recovery.circuit_board import BreakerBoard
from worker.recovery.circuit_config import BoardConfig, BreakerConfig
from worker.recovery.circuit_states import State

METRICS_TOKEN = "metrics-token-for-tests-8d1e"


@pytest.fixture(autouse=True)
def fresh_control_board(redis_server: str) -> Iterator[None]:
    """Write the transitions the control board queued before the test ends."""
    yield
    services.close_control_board()


@pytest.fixture
def worker_board(redis_server: str) -> Iterator[BreakerBoard]:
    """A board as a worker process has, with a small failure threshold."""
    board = BreakerBoard(
        BoardConfig(redis_server),
        breaker_config=BreakerConfig(failure_threshold=1, recovery_timeout_s=60),
        listeners=[TransitionRecorder()],
    )
    yield board
    board.close()


def open_by_failures(board: BreakerBoard, name: str) -> None:
    """Open breaker ``name`` by one failure and wait until its row is written."""
    breaker = board.breaker(name)
    assert breaker.allow()
    breaker.record_failure(ConnectionError("refused"))
    assert breaker.state is State.OPEN
    [recorder] = board.listeners
    assert isinstance(recorder, TransitionRecorder)
    assert recorder.flush()


def command(*args: str) -> str:
    out = StringIO()
    call_command("onec_breaker", *args, stdout=out)
    return out.getvalue()


def rows(name: str) -> list[BreakerTransition]:
    services.close_control_board()  # writes the queued rows
    return list(BreakerTransition.objects.filter(breaker=name).order_by("id"))


# --- Command -----------------------------------------------------------------


def test_command_forces_and_resets(transactional_db: None) -> None:
    name = unique_name("command")

    opened = command("open", name)
    status = json.loads(command("status", name, "--json"))
    closed = command("close", name)
    reset = command("reset", name)

    assert (
        opened
        == f"Circuit breaker {name} forced open; calls are rejected until it is closed or reset.\n"
    )
    [breaker] = status["breakers"]
    assert breaker["name"] == name
    assert breaker["state"] == "open"
    assert breaker["forced"] == "open"
    assert breaker["retry_at"] is None
    assert "forced closed" in closed
    assert "reset" in reset
    logged = [(r.old_state, r.new_state, r.reason, r.actor) for r in rows(name)]
    assert logged == [
        ("closed", "open", "forced_open", "command"),
        ("open", "closed", "forced_closed", "command"),
        ("closed", "closed", "reset", "command"),
    ]


def test_command_status_lists_breakers(
    transactional_db: None, worker_board: BreakerBoard
) -> None:
    name = unique_name("listed")
    open_by_failures(worker_board, name)

    output = command("status")

    line = next(line for line in output.splitlines() if line.startswith(name))
    assert " open until " in line
    assert "failures=1" in line


def test_command_rejects_invalid_input(transactional_db: None) -> None:
    with pytest.raises(CommandError, match="needs exactly one breaker NAME"):
        command("open")
    with pytest.raises(CommandError, match="invalid circuit breaker name"):
        command("reset", "Bad Name")


def test_command_reports_redis_outage(transactional_db: None, settings: Any) -> None:
    settings.ONEC_BREAKER_REDIS_URL = "unix:///nonexistent/redis.sock"
    services.close_control_board()

    with pytest.raises(
        CommandError, match="was not changed, because Redis is unavailable"
    ):
        command("open", unique_name("outage"))


# --- Admin -------------------------------------------------------------------


def test_admin_shows_states_and_forces(
    transactional_db: None, worker_board: BreakerBoard, admin_client: Client
) -> None:
    name = unique_name("admin")
    open_by_failures(worker_board, name)
    changelist = reverse("admin:breakers_breakertransition_changelist")

    page = admin_client.get(changelist)
    response = admin_client.post(
        reverse("admin:breakers_breakertransition_force"),
        {"name": name, "action": "reset"},
    )

    assert page.status_code == 200
    row = next(r for r in page.context["breaker_rows"] if r["name"] == name)
    assert row["state_value"] == "open"
    assert row["failures"] == 1
    assert row["retry_at"] is not None
    assert page.context["can_force_breakers"] is True
    assert b'name="action" value="open"' in page.content
    assert response.status_code == 302
    wait_for(lambda: worker_board.breaker(name).state is State.CLOSED, 1.0, "the reset")
    assert [(r.reason, r.actor) for r in rows(name)][-1] == ("reset", "admin:admin")


def test_admin_force_needs_permission(transactional_db: None, client: Client) -> None:
    staff = User.objects.create_user(
        "viewer", password="viewer-password-1", is_staff=True
    )
    staff.user_permissions.add(
        Permission.objects.get(codename="view_breakertransition")
    )
    client.force_login(staff)
    name = unique_name("no-permission")

    page = client.get(reverse("admin:breakers_breakertransition_changelist"))
    response = client.post(
        reverse("admin:breakers_breakertransition_force"),
        {"name": name, "action": "open"},
    )

    assert page.status_code == 200
    assert page.context["can_force_breakers"] is False
    assert b'name="action" value="open"' not in page.content
    assert response.status_code == 403
    assert rows(name) == []


# --- Metrics -----------------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        (f"Bearer {METRICS_TOKEN}x", 401),
        (f"Bearer {METRICS_TOKEN}", 200),
        (basic("staff", "staff-password-1"), 200),
        (basic("staff", "wrong-password"), 401),
        (basic("customer", "customer-password-1"), 401),
        ("Basic not-base64!", 401),
    ],
)
def test_metrics_requires_authentication(
    transactional_db: None,
    client: Client,
    settings: Any,
    authorization: str | None,
    status: int,
) -> None:
    settings.METRICS_TOKEN = METRICS_TOKEN
    User.objects.create_user("staff", password="staff-password-1", is_staff=True)
    User.objects.create_user("customer", password="customer-password-1")
    headers = {"Authorization": authorization} if authorization else {}

    response = client.get("/metrics", headers=headers)

    assert response.status_code == status
    if status == 401:
        assert response["WWW-Authenticate"].startswith('Basic realm="metrics"')


def test_metrics_bearer_off_without_token(
    transactional_db: None, client: Client, settings: Any
) -> None:
    settings.METRICS_TOKEN = ""

    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer ")

    assert response.status_code == 401


def test_metrics_export_states_and_counts(
    transactional_db: None,
    worker_board: BreakerBoard,
    client: Client,
    settings: Any,
    redis_server: str,
) -> None:
    from freesport.integration.models import ManualTask

    settings.METRICS_TOKEN = METRICS_TOKEN
    queue = unique_name("metrics-queue")
    settings.METRICS_CELERY_QUEUES = [queue]
    name = unique_name("metrics")
    open_by_failures(worker_board, name)
    ManualTask.objects.create(
        operation="export_customers",
        task_name="worker.tasks.exports.export_customer",
        error_type="validation",
        fingerprint="metrics-test",
    )
    client_redis = redis.Redis.from_url(redis_server)
    client_redis.rpush(queue, "a", "b", "c")
    client_redis.rpush(f"{queue}\x06\x163", "d", "e")

    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
    client_redis.delete(queue, f"{queue}\x06\x163")
    client_redis.close()
    text = response.content.decode()

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert (
        f'freesport_circuit_breaker_state{{breaker="{name}",state="open"}} 1.0' in text
    )
    assert (
        f'freesport_circuit_breaker_state{{breaker="{name}",state="closed"}} 0.0'
        in text
    )
    assert f'freesport_circuit_breaker_failures{{breaker="{name}"}} 1.0' in text
    assert (
        f'freesport_circuit_breaker_transitions_total{{breaker="{name}",'
        'from_state="closed",to_state="open"} 1.0'
    ) in text
    open_tasks = ManualTask.objects.filter(state__in=["open", "in_progress"]).count()
    assert f"freesport_manual_tasks_open {float(open_tasks)}" in text
    assert open_tasks >= 1
    assert f'freesport_celery_queue_length{{queue="{queue}"}} 5.0' in text
    assert "freesport_circuit_breaker_redis_up 1.0" in text


def test_breaker_report_for_status_command(
    transactional_db: None, worker_board: BreakerBoard, settings: Any
) -> None:
    name = unique_name("report")
    open_by_failures(worker_board, name)

    report = services.breaker_report()
    settings.ONEC_BREAKER_REDIS_URL = "unix:///nonexistent/redis.sock"
    unreachable = services.breaker_report()

    entry = next(row for row in report if row["name"] == name)
    assert entry["state"] == "open"
    assert entry["failures"] == 1
    assert entry["retry_at"] is not None
    assert len(unreachable) == 1
    assert unreachable[0]["name"] == ""
    assert "ConnectionError" in unreachable[0]["error"]
