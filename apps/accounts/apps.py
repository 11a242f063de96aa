from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"

    def ready(self):
        # Registers the token scheme with drf-spectacular.
        from apps.accounts import schema  # noqa: F401
