from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "apps.training"
    label = "training"
    verbose_name = "PRBoost training"

    def ready(self) -> None:
        from apps.training import kinds

        kinds.register()
