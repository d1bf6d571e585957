from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class IntegrationConfig(AppConfig):
    name = "freesport.integration"
    verbose_name = _("Integration errors and recovery")

    def ready(self) -> None:
        from freesport.integration import checks  # noqa: F401  (registers checks)
