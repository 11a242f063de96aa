from django.apps import AppConfig


class GuidelinesConfig(AppConfig):
    name = "apps.guidelines"
    label = "guidelines"
