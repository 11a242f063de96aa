from django.apps import AppConfig


class LoRCConfig(AppConfig):
    name = "apps.lorc"
    label = "lorc"
    verbose_name = "LLM compression (LoRC)"

    def ready(self) -> None:
        from apps.lorc import kinds

        kinds.register()
