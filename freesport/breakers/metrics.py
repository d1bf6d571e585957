"""The ``/metrics`` endpoint in the Prometheus text format.

It exports the state of every circuit breaker, the transition counts from the
transition log, the open manual tasks and the length of the Celery queues in
Redis. Each request builds its own registry, so the values are read when
Prometheus scrapes, in the web process, from Redis and the database.

Access needs a bearer token equal to ``METRICS_TOKEN`` (bearer access is off
while it is empty), HTTP Basic credentials of an active staff user, or a staff
user's admin session. NOTE: failed Basic logins are not rate-limited here.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Iterable, Iterator

import redis
from django.conf import settings
from django.contrib.auth import authenticate
from django.db import DatabaseError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from freesport.breakers import services
from freesport.breakers.models import BreakerTransition
from worker.recovery.circuit_states import State

logger = logging.getLogger("freesport.breakers")

# Celery's Redis transport keeps priorities 3, 6 and 9 of a queue in extra
# lists named "<queue>\x06\x16<priority>" (kombu.transport.redis).
CELERY_PRIORITY_SEPARATOR = "\x06\x16"
CELERY_PRIORITY_STEPS = (3, 6, 9)


def celery_queue_names() -> list[str]:
    """Return METRICS_CELERY_QUEUES, or the queues the settings send tasks to."""
    configured = getattr(settings, "METRICS_CELERY_QUEUES", None)
    if configured:
        return list(configured)
    names = ["celery"]
    for setting in ("INTEGRATION_TASK_QUEUE", "EXCHANGE_IMPORT_QUEUE"):
        queue = getattr(settings, setting, None)
        if queue and queue not in names:
            names.append(queue)
    return names


def open_manual_tasks() -> int:
    """Count manual tasks that an operator has not finished: open or in progress."""
    try:
        from freesport.integration.models import ManualTask
    except ImportError:
        # The integration app is optional for this endpoint, and without it
        # there are no manual tasks to report.
        return 0
    return ManualTask.objects.filter(
        state__in=[ManualTask.State.OPEN, ManualTask.State.IN_PROGRESS]
    ).count()


class IntegrationCollector(Collector):
    """Reads every value when Prometheus scrapes."""

    def collect(self) -> Iterator[Metric]:
        yield from self._breakers()
        yield from self._transitions()
        yield from self._manual_tasks()
        yield from self._queues()

    def _breakers(self) -> Iterable[Metric]:
        state = GaugeMetricFamily(
            "freesport_circuit_breaker_state",
            "State of each circuit breaker: 1 for its current state, 0 for the others.",
            labels=["breaker", "state"],
        )
        failures = GaugeMetricFamily(
            "freesport_circuit_breaker_failures",
            "Consecutive failures counted by each closed circuit breaker.",
            labels=["breaker"],
        )
        forced = GaugeMetricFamily(
            "freesport_circuit_breaker_forced",
            "1 while an operator holds the circuit breaker open or closed.",
            labels=["breaker"],
        )
        redis_up = GaugeMetricFamily(
            "freesport_circuit_breaker_redis_up",
            "1 if every circuit breaker's state was read from Redis.",
        )
        statuses = services.breaker_statuses()
        for status in statuses:
            if status.view is None:
                logger.warning(
                    "Metrics: circuit breaker %s not read: %s",
                    status.name or "list",
                    status.error,
                )
                continue
            for value in State:
                state.add_metric(
                    [status.name, value.value],
                    1.0 if status.view.state is value else 0.0,
                )
            failures.add_metric([status.name], status.view.failures)
            forced.add_metric([status.name], 1.0 if status.view.forced else 0.0)
        redis_up.add_metric([], 0.0 if any(s.view is None for s in statuses) else 1.0)
        return [state, failures, forced, redis_up]

    def _transitions(self) -> Iterable[Metric]:
        transitions = CounterMetricFamily(
            "freesport_circuit_breaker_transitions",
            "Transitions of each circuit breaker recorded in the transition log.",
            labels=["breaker", "from_state", "to_state"],
        )
        rows = (
            BreakerTransition.objects.values("breaker", "old_state", "new_state")
            .annotate(count=Count("id"))
            .order_by("breaker", "old_state", "new_state")
        )
        for row in rows:
            transitions.add_metric(
                [row["breaker"], row["old_state"], row["new_state"]], row["count"]
            )
        return [transitions]

    def _manual_tasks(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            "freesport_manual_tasks_open",
            "Manual tasks waiting for an operator (open or in progress).",
        )
        try:
            gauge.add_metric([], open_manual_tasks())
        except DatabaseError as error:
            logger.warning("Metrics: manual tasks not counted: %s", error)
            return []
        return [gauge]

    def _queues(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            "freesport_celery_queue_length",
            "Messages waiting in each Celery queue in Redis, all priorities.",
            labels=["queue"],
        )
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
        try:
            for queue in celery_queue_names():
                keys = [queue] + [
                    f"{queue}{CELERY_PRIORITY_SEPARATOR}{step}"
                    for step in CELERY_PRIORITY_STEPS
                ]
                pipeline = client.pipeline(transaction=False)
                for key in keys:
                    pipeline.llen(key)
                gauge.add_metric([queue], sum(pipeline.execute()))
        except redis.RedisError as error:
            logger.warning("Metrics: Celery queues not measured: %s", error)
            return []
        finally:
            client.close()
        return [gauge]


def is_authorized(request: HttpRequest) -> bool:
    """Check the bearer token, HTTP Basic staff credentials or a staff session."""
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        token = getattr(settings, "METRICS_TOKEN", "")
        return bool(token) and hmac.compare_digest(
            credentials.strip().encode(), token.encode()
        )
    if scheme == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        username, _, password = decoded.partition(":")
        user = authenticate(request, username=username, password=password)
        return user is not None and user.is_active and user.is_staff
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


@require_GET
def breaker_metrics(request: HttpRequest) -> HttpResponse:
    if not is_authorized(request):
        response = HttpResponse("Authentication required.\n", status=401)
        response["WWW-Authenticate"] = 'Basic realm="metrics", charset="UTF-8"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(IntegrationCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
