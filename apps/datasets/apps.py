from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "apps.datasets"
    label = "datasets"

    def ready(self) -> None:
        from apps.datasets import import_services, search_index
        from apps.jobs.kinds import register_launchable

        # Scripts import files that are already on the server through the jobs API;
        # uploads go through the import page.
        register_launchable(
            kind="import_dataset",
            label="Import a dataset",
            description="Import a file or WRENCH folder on the server (all or nothing).",
            clean_params=import_services.clean_import_params,
            resource="interactive",  # a person waits for it: never behind a model job
        )
        # Imports launch it themselves; admins may run it again (e.g. after an interrupted run).
        register_launchable(
            kind=search_index.INDEX_JOB_KIND,
            label="Build the search index",
            description=(
                "Index the project's examples not yet indexed for full-text search "
                "(imports start this on their own; searching them meanwhile is slower)."
            ),
            clean_params=search_index.clean_index_params,
            resource="interactive",
        )
