"""Celery workers: the only bridge between the database and ``models/``."""

from workers.celery_app import app

__all__ = ["app"]
