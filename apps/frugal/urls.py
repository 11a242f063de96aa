from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="projects:list", permanent=False)),
    path("accounts/", include("apps.accounts.urls")),
    path("projects/", include("apps.projects.urls")),
    path("projects/<int:project_id>/data/", include("apps.datasets.urls")),
    path("projects/<int:project_id>/import/", include("apps.datasets.import_urls")),
    path("projects/<int:project_id>/rules/", include("apps.rules.urls")),
    path("projects/<int:project_id>/training/", include("apps.training.urls")),
    path("projects/<int:project_id>/agreement/", include("apps.agreement.urls")),
    path("projects/<int:project_id>/guidelines/", include("apps.guidelines.urls")),
    path("projects/<int:project_id>/bulk/", include("apps.bulk.urls")),
    path("projects/<int:project_id>/preferences/", include("apps.alignment.urls")),
    path("projects/<int:project_id>/lorc/", include("apps.lorc.urls")),
    path("projects/<int:project_id>/distill/", include("apps.distill.urls")),
    path("jobs/", include("apps.jobs.urls")),
    path("api/", include("apps.api.urls")),
    path("django-admin/", admin.site.urls),
]
