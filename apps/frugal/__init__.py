"""The Django project. Its Celery app is loaded with it (Celery's Django layout), so that
``celery.current_app`` in apps.jobs is Frugal's in the web process as in a worker."""

from workers.celery_app import app as celery_app

__all__ = ["celery_app"]
