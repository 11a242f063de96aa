from django.apps import AppConfig


class AlignmentConfig(AppConfig):
    name = "apps.alignment"
    label = "alignment"
    verbose_name = "Preference data and DORM weights"

    def ready(self) -> None:
        from apps.alignment import kinds

        kinds.register()
