"""Operator-facing labels are translated to Russian through Django i18n."""

from __future__ import annotations

from django.utils import translation

from freesport.catalog.models import Product
from freesport.exchange.models import ExchangeSession, ImportProblem


def test_admin_labels_in_russian() -> None:
    with translation.override("ru"):
        assert str(ExchangeSession._meta.verbose_name_plural) == "сеансы обмена"
        assert str(ExchangeSession.Status.PARTIAL.label) == "частично успешно"
        assert str(ImportProblem.Action.CLAMPED.label) == "усечено"
        assert str(Product._meta.get_field("sku").verbose_name) == "артикул"


def test_labels_stay_english_in_english() -> None:
    with translation.override("en"):
        assert str(ExchangeSession.Status.PARTIAL.label) == "partially succeeded"


def test_error_messages_in_russian() -> None:
    from freesport.exceptions import OneCConnectionError, ValidationError

    with translation.override("ru"):
        error = OneCConnectionError()
        assert error.message == "1С недоступна. Обмен будет повторён."
        assert error.to_dict()["code"] == "ONEC_CONNECTION_ERROR"
        assert ValidationError().to_dict()["status"] == 400
