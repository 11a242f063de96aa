from django.urls import path

from apps.projects import views

app_name = "projects"
urlpatterns = [
    path("", views.project_list, name="list"),
    path("new/", views.project_create, name="create"),
    path("<int:project_id>/", views.dashboard, name="dashboard"),
    path("<int:project_id>/settings/", views.project_settings, name="settings"),
    path("<int:project_id>/archive/", views.project_archive, name="archive"),
    path("<int:project_id>/unarchive/", views.project_unarchive, name="unarchive"),
    path("<int:project_id>/delete/", views.project_delete, name="delete"),
    path("<int:project_id>/members/", views.members, name="members"),
    path("<int:project_id>/members/add/", views.member_add, name="member_add"),
    path(
        "<int:project_id>/members/<int:membership_id>/role/",
        views.member_role,
        name="member_role",
    ),
    path("<int:project_id>/members/invite/", views.member_invite, name="member_invite"),
    path(
        "<int:project_id>/members/invites/<int:invite_id>/revoke/",
        views.member_invite_revoke,
        name="member_invite_revoke",
    ),
    path(
        "<int:project_id>/members/<int:membership_id>/remove/",
        views.member_remove,
        name="member_remove",
    ),
]
