from django.urls import path

from apps.accounts import people_views, views

app_name = "accounts"
urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<int:token_id>/revoke/", views.revoke_token, name="revoke_token"),
    path("people/", people_views.people_list, name="people"),
    path("people/new/", people_views.user_create, name="user_create"),
    path("people/<int:user_id>/active/", people_views.user_active, name="user_active"),
    path("invites/new/", people_views.invite_create, name="invite_create"),
    path("invites/<int:invite_id>/revoke/", people_views.invite_revoke, name="invite_revoke"),
    path("invite/<str:token>/", people_views.invite_accept, name="invite_accept"),
]
