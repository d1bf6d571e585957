from django.conf import settings
from django.contrib import admin
from django.urls import path

from freesport.exchange.views import exchange

urlpatterns = [
    path("admin/", admin.site.urls),
    path(settings.EXCHANGE_URL, exchange, name="onec-exchange"),
]
