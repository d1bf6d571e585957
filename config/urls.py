import re

from django.conf import settings
from django.contrib import admin
from django.urls import path, re_path

from freesport.breakers.metrics import breaker_metrics
from freesport.exchange.views import exchange

urlpatterns = [
    path("admin/", admin.site.urls),
    # With or without the final slash: a POST to the other form would otherwise
    # reach APPEND_SLASH, which cannot redirect a POST and returns an HTML error.
    re_path(
        rf"^{re.escape(settings.EXCHANGE_URL.rstrip('/'))}/?$",
        exchange,
        name="onec-exchange",
    ),
    path("metrics", breaker_metrics, name="metrics"),
]
