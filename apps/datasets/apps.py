from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "apps.datasets"
    label = "datasets"

    def ready(self) -> None:
        from apps.datasets import import_services
        from apps.jobs.kinds import register_launchable

        # Scripts import files that are already on the server through the jobs API;
        # uploads go through the import page.
        register_launchable(
            kind="import_dataset",
            label="Import a dataset",
            description="Import a file or WRENCH folder on the server (all or nothing).",
            clean_params=import_services.clean_import_params,
        )
