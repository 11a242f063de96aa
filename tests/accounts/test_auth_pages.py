"""Log in and out through the pages, and change the password."""

import pytest
from django.urls import reverse


@pytest.mark.django_db
def test_login_page_logs_in_and_redirects_to_projects(client, make_user):
    make_user("alice", password="correct horse battery")
    page = client.get(reverse("accounts:login"))
    assert page.status_code == 200
    assert b'name="csrfmiddlewaretoken"' in page.content

    response = client.post(
        reverse("accounts:login"), {"username": "alice", "password": "correct horse battery"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("projects:list")
    assert client.get(reverse("projects:list")).status_code == 200


@pytest.mark.django_db
def test_login_with_wrong_password_shows_error_and_stays_anonymous(client, make_user):
    make_user("alice", password="correct horse battery")
    response = client.post(reverse("accounts:login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"errorlist" in response.content
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_login_follows_next_to_the_page_asked_for(client, make_user):
    make_user("alice", password="correct horse battery")
    response = client.post(
        reverse("accounts:login") + "?next=/accounts/tokens/",
        {"username": "alice", "password": "correct horse battery", "next": "/accounts/tokens/"},
    )
    assert response["Location"] == "/accounts/tokens/"


@pytest.mark.django_db
def test_logout_by_post_ends_the_session(client, make_user):
    user = make_user("alice")
    client.force_login(user)
    response = client.post(reverse("accounts:logout"))
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:login")
    follow = client.get(reverse("projects:list"))
    assert follow.status_code == 302
    assert follow["Location"].startswith(reverse("accounts:login"))


@pytest.mark.django_db
def test_logout_by_get_is_refused(client, make_user):
    client.force_login(make_user("alice"))
    assert client.get(reverse("accounts:logout")).status_code == 405
    assert "_auth_user_id" in client.session


@pytest.mark.django_db
def test_pages_show_logout_form_with_csrf_token(client, make_user):
    client.force_login(make_user("alice"))
    page = client.get(reverse("accounts:tokens")).content.decode()
    assert f'action="{reverse("accounts:logout")}"' in page
    assert 'method="post"' in page


@pytest.mark.django_db
def test_password_change_page_changes_password(client, make_user):
    user = make_user("alice", password="old password 1234")
    client.force_login(user)
    response = client.post(
        reverse("accounts:password_change"),
        {
            "old_password": "old password 1234",
            "new_password1": "a new long password 987",
            "new_password2": "a new long password 987",
        },
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("a new long password 987")
