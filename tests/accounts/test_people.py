"""People management: invites (one-time, expiring), one-time passwords, (de)activation."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import timezone

from apps.accounts import people
from apps.accounts.models import Invite
from apps.accounts.services import create_api_token
from apps.projects.models import Membership

User = get_user_model()
GOOD_PASSWORD = "a-long-enough-Passw0rd"


@pytest.fixture
def staff(make_user):
    return make_user("stella", is_staff=True)


def test_project_admin_invites_and_the_link_works_once(project, admin_user, client):
    invite, secret = people.create_invite(by=admin_user, project=project, role="annotator")
    assert invite.digest != secret and secret not in str(invite.__dict__)
    url = reverse("accounts:invite_accept", args=[secret])
    assert b"You are invited to" in client.get(url).content
    response = client.post(
        url, {"username": "newbie", "password": GOOD_PASSWORD, "password2": GOOD_PASSWORD}
    )
    assert response.status_code == 302
    user = User.objects.get(username="newbie")
    assert Membership.objects.get(project=project, user=user).role == "annotator"
    assert client.get(reverse("projects:dashboard", args=[project.pk])).status_code == 200
    client.logout()
    again = client.post(
        url, {"username": "second", "password": GOOD_PASSWORD, "password2": GOOD_PASSWORD}
    )
    assert b"not valid" in again.content
    assert not User.objects.filter(username="second").exists()


def test_expired_and_revoked_invites_do_not_open(project, admin_user):
    invite, secret = people.create_invite(by=admin_user, project=project)
    Invite.objects.filter(pk=invite.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert people.open_invite(secret=secret) is None
    with pytest.raises(ValidationError):
        people.accept_invite(secret=secret, username="x", password=GOOD_PASSWORD)
    invite, secret = people.create_invite(by=admin_user, project=project)
    people.revoke_invite(invite=invite, by=admin_user)
    assert people.open_invite(secret=secret) is None
    assert people.open_invite(secret="inv_" + "x" * 30) is None


def test_who_may_invite(project, annotator, outsider, staff):
    with pytest.raises(PermissionDenied):
        people.create_invite(by=annotator, project=project)
    with pytest.raises(PermissionDenied):
        people.create_invite(by=outsider, project=project)
    with pytest.raises(PermissionDenied):
        people.create_invite(by=annotator)  # site-wide invites are for staff
    people.create_invite(by=staff)
    with pytest.raises(ValidationError):
        people.create_invite(by=staff, role="owner")
    with pytest.raises(ValidationError):
        people.create_invite(by=staff, days=99)


def test_accept_checks_username_and_password(project, admin_user, annotator, client):
    _, secret = people.create_invite(by=admin_user, project=project)
    url = reverse("accounts:invite_accept", args=[secret])
    taken = client.post(
        url, {"username": "ANNIE", "password": GOOD_PASSWORD, "password2": GOOD_PASSWORD}
    )
    assert taken.status_code == 400 and b"taken" in taken.content
    weak = client.post(url, {"username": "new", "password": "123", "password2": "123"})
    assert weak.status_code == 400
    differ = client.post(url, {"username": "new", "password": GOOD_PASSWORD, "password2": "x"})
    assert b"differ" in differ.content
    assert people.open_invite(secret=secret) is not None  # still usable after mistakes


def test_members_page_creates_an_invite_link(client, project, admin_user, annotator):
    client.force_login(annotator)
    assert client.post(reverse("projects:member_invite", args=[project.pk])).status_code == 403
    client.force_login(admin_user)
    response = client.post(
        reverse("projects:member_invite", args=[project.pk]),
        {"role": "admin", "note": "carol@example.org"},
        HTTP_HX_REQUEST="true",
    )
    assert b"/accounts/invite/inv_" in response.content
    invite = Invite.objects.get()
    assert (invite.project, invite.role, invite.note) == (project, "admin", "carol@example.org")
    client.post(reverse("projects:member_invite_revoke", args=[project.pk, invite.pk]))
    invite.refresh_from_db()
    assert invite.state == "revoked"


def test_staff_create_account_with_one_time_password(client, staff, project):
    client.force_login(staff)
    response = client.post(
        reverse("accounts:user_create"),
        {"username": "dora", "project": project.pk, "role": "annotator"},
    )
    assert response.status_code == 200
    password = response.context["password"]
    assert password and password.encode() in response.content
    user = User.objects.get(username="dora")
    assert user.check_password(password)
    assert Membership.objects.filter(project=project, user=user).exists()
    assert password.encode() not in client.get(reverse("accounts:people")).content
    dup = client.post(reverse("accounts:user_create"), {"username": "Dora"}, follow=True)
    assert b"taken" in dup.content


def test_deactivate_and_reactivate(client, staff, annotator, project):
    _, token = create_api_token(user=annotator, name="script")
    client.force_login(staff)
    client.post(reverse("accounts:user_active", args=[annotator.pk]), {"active": "0"})
    annotator.refresh_from_db()
    assert not annotator.is_active
    api = client.__class__()
    assert api.get("/api/v1/projects/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401
    assert not client.__class__().login(username="annie", password="pw-for-tests-123")
    client.post(reverse("accounts:user_active", args=[annotator.pk]), {"active": "1"})
    annotator.refresh_from_db()
    assert annotator.is_active
    response = client.post(
        reverse("accounts:user_active", args=[staff.pk]), {"active": "0"}, follow=True
    )
    assert b"your own account" in response.content
    staff.refresh_from_db()
    assert staff.is_active


def test_people_pages_are_staff_only(client, admin_user, annotator):
    client.force_login(admin_user)  # a project admin, not staff
    assert client.get(reverse("accounts:people")).status_code == 403
    response = client.post(reverse("accounts:user_active", args=[annotator.pk]), {"active": "0"})
    assert response.status_code == 403
    assert client.post(reverse("accounts:user_create"), {"username": "x"}).status_code == 403
    annotator.refresh_from_db()
    assert annotator.is_active and not User.objects.filter(username="x").exists()


def test_deactivation_ends_open_sessions(client, staff, annotator, project):
    session = client.__class__()
    session.login(username="annie", password="pw-for-tests-123")
    url = reverse("projects:dashboard", args=[project.pk])
    assert session.get(url).status_code == 200
    client.force_login(staff)
    client.post(reverse("accounts:user_active", args=[annotator.pk]), {"active": "0"})
    response = session.get(url)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
