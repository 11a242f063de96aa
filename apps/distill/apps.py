from django.apps import AppConfig


class DistillConfig(AppConfig):
    name = "apps.distill"
    label = "distill"
    verbose_name = "PTLoss distillation"

    def ready(self) -> None:
        from apps.distill import kinds

        kinds.register()
