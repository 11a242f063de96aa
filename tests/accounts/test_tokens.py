"""Personal API tokens: services, the tokens page, and authenticating the API with them."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from apps.accounts.authentication import token_digest
from apps.accounts.models import ApiToken
from apps.accounts.services import create_api_token, revoke_api_token

API = "/api/v1/projects/"


def bearer(secret: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


@pytest.mark.django_db
def test_create_token_returns_frg_secret_and_stores_only_its_digest(make_user):
    user = make_user("alice")
    token, secret = create_api_token(user=user, name="nightly export")
    assert secret.startswith("frg_") and len(secret) > 40
    assert token.prefix == secret[:12]
    assert token.digest == token_digest(secret)
    row = ApiToken.objects.filter(pk=token.pk).values().get()
    assert all(secret not in str(value) for value in row.values())


@pytest.mark.django_db
def test_tokens_are_unique(make_user):
    user = make_user("alice")
    secrets = {create_api_token(user=user, name=f"t{i}")[1] for i in range(5)}
    assert len(secrets) == 5


@pytest.mark.django_db
def test_create_token_needs_a_name(make_user):
    with pytest.raises(ValidationError, match="name"):
        create_api_token(user=make_user("alice"), name="   ")
    assert ApiToken.objects.count() == 0


@pytest.mark.django_db
def test_revoke_someone_elses_token_is_refused(make_user):
    token, _ = create_api_token(user=make_user("alice"), name="t")
    with pytest.raises(PermissionDenied):
        revoke_api_token(token=token, user=make_user("bob"))
    token.refresh_from_db()
    assert token.revoked_at is None


@pytest.mark.django_db
def test_revoking_twice_keeps_the_first_revocation_time(make_user):
    user = make_user("alice")
    token, _ = create_api_token(user=user, name="t")
    first = revoke_api_token(token=token, user=user).revoked_at
    again = revoke_api_token(token=token, user=user).revoked_at
    assert first is not None and again == first


@pytest.mark.django_db
def test_api_accepts_bearer_token_and_records_last_use(client, make_user):
    user = make_user("alice")
    token, secret = create_api_token(user=user, name="t")
    response = client.get(API, **bearer(secret))
    assert response.status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None


@pytest.mark.django_db
def test_revoked_token_gets_401(client, make_user):
    user = make_user("alice")
    token, secret = create_api_token(user=user, name="t")
    revoke_api_token(token=token, user=user)
    response = client.get(API, **bearer(secret))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["message"] == "Invalid or revoked token."


@pytest.mark.django_db
def test_unknown_token_gets_401(client, make_user):
    response = client.get(API, **bearer("frg_not-a-real-token"))
    assert response.status_code == 401


@pytest.mark.django_db
def test_token_of_deactivated_user_gets_401(client, make_user):
    user = make_user("alice")
    _, secret = create_api_token(user=user, name="t")
    user.is_active = False
    user.save()
    assert client.get(API, **bearer(secret)).status_code == 401


# --- the tokens page ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_tokens_page_needs_login(client):
    response = client.get(reverse("accounts:tokens"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


@pytest.mark.django_db
def test_tokens_page_creates_token_and_shows_secret_once(client, make_user):
    user = make_user("alice")
    client.force_login(user)
    response = client.post(reverse("accounts:tokens"), {"name": "my script"})
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    token = ApiToken.objects.get(user=user)
    secret = response.context["new_secret"]
    assert token.digest == token_digest(secret)
    assert secret in response.content.decode()

    again = client.get(reverse("accounts:tokens")).content.decode()
    assert secret not in again
    assert "my script" in again and token.prefix in again


@pytest.mark.django_db
def test_tokens_page_with_empty_name_creates_nothing(client, make_user):
    client.force_login(make_user("alice"))
    response = client.post(reverse("accounts:tokens"), {"name": ""})
    assert response.status_code == 400
    assert b"errorlist" in response.content
    assert ApiToken.objects.count() == 0


@pytest.mark.django_db
def test_tokens_page_lists_only_own_tokens(client, make_user):
    alice, bob = make_user("alice"), make_user("bob")
    create_api_token(user=alice, name="alice-token")
    create_api_token(user=bob, name="bob-token")
    client.force_login(alice)
    page = client.get(reverse("accounts:tokens")).content.decode()
    assert "alice-token" in page and "bob-token" not in page


@pytest.mark.django_db
def test_revoke_from_page_stops_the_token(client, make_user):
    user = make_user("alice")
    token, secret = create_api_token(user=user, name="t")
    client.force_login(user)
    response = client.post(reverse("accounts:revoke_token", args=[token.pk]))
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert "revoked" in client.get(reverse("accounts:tokens")).content.decode()
    client.logout()
    assert client.get(API, **bearer(secret)).status_code == 401


@pytest.mark.django_db
def test_revoke_from_page_with_htmx_returns_the_list_fragment(client, make_user):
    user = make_user("alice")
    token, _ = create_api_token(user=user, name="t")
    client.force_login(user)
    response = client.post(
        reverse("accounts:revoke_token", args=[token.pk]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="token-list"' in body and "<html" not in body and "revoked" in body


@pytest.mark.django_db
def test_revoking_another_users_token_from_page_is_404(client, make_user):
    token, _ = create_api_token(user=make_user("alice"), name="t")
    client.force_login(make_user("bob"))
    assert client.post(reverse("accounts:revoke_token", args=[token.pk])).status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


@pytest.mark.django_db
def test_revoke_by_get_is_refused(client, make_user):
    user = make_user("alice")
    token, _ = create_api_token(user=user, name="t")
    client.force_login(user)
    assert client.get(reverse("accounts:revoke_token", args=[token.pk])).status_code == 405


@pytest.mark.django_db
def test_create_api_token_command_prints_a_working_secret(client, make_user):
    from io import StringIO

    from django.core.management import call_command

    make_user("alice")
    out = StringIO()
    call_command("create_api_token", "alice", "--name", "ci", stdout=out)
    secret = out.getvalue().strip()
    assert secret.startswith("frg_")
    assert client.get(API, **bearer(secret)).status_code == 200


@pytest.mark.django_db
def test_create_api_token_command_refuses_unknown_user():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="no user named"):
        call_command("create_api_token", "ghost")
