"""Credential providers for the 1C HTTP service client.

A provider is any zero-argument callable that returns ``Credentials``. The client
calls it once before its first request and again on every
``OneCClient.refresh_credentials()``, so a provider that reads a rotated secret
gives the client the new password without a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class Credentials:
    """User name and password of a 1C infobase user; repr() omits the password."""

    user: str
    password: str = field(repr=False)


CredentialProvider = Callable[[], Credentials]


class StaticCredentials:
    """Provider of one fixed user name and password."""

    def __init__(self, user: str, password: str) -> None:
        if not user:
            raise ValueError("the 1C user name is empty. Pass the infobase user")
        self._credentials = Credentials(user, password)

    def __call__(self) -> Credentials:
        return self._credentials

    def __repr__(self) -> str:
        return f"StaticCredentials(user={self._credentials.user!r})"


class SettingsCredentials:
    """Provider that reads ONEC_HTTP_USER and ONEC_HTTP_PASSWORD from Django settings.

    The settings are read on every call, so a test's ``override_settings`` or a
    settings module that reloads its secrets is seen on the next refresh.
    """

    def __call__(self) -> Credentials:
        user = getattr(settings, "ONEC_HTTP_USER", "")
        password = getattr(settings, "ONEC_HTTP_PASSWORD", "")
        if not user:
            raise ImproperlyConfigured(
                "ONEC_HTTP_USER is empty. Set it to the 1C infobase user that the "
                "site signs in as"
            )
        return Credentials(str(user), str(password))

    def __repr__(self) -> str:
        return "SettingsCredentials()"
