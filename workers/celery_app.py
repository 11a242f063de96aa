"""The Celery application. Start a worker with ``celery -A workers worker -Q cpu``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.frugal.settings")

# Each area keeps its thin tasks in its own module; the list is the whole set.
TASK_MODULES = ["workers.tasks", "workers.dataset_tasks"]

app = Celery("frugal", include=TASK_MODULES)
app.config_from_object("django.conf:settings", namespace="CELERY")
