"""Dataset import tasks."""
