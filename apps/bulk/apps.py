from django.apps import AppConfig


class BulkConfig(AppConfig):
    name = "apps.bulk"
    label = "bulk"

    def ready(self) -> None:
        from apps.bulk.services import APPLY_JOB_KIND, UNDO_JOB_KIND
        from apps.jobs.kinds import declare_kind

        # A person waits for a bulk action: the interactive queue, never behind a model job.
        # Launched only through the bulk pages (which check the selection), not by name.
        declare_kind(kind=APPLY_JOB_KIND, resource="interactive")
        declare_kind(kind=UNDO_JOB_KIND, resource="interactive")
