from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BreakersConfig(AppConfig):
    name = "freesport.breakers"
    verbose_name = _("Circuit breakers")
