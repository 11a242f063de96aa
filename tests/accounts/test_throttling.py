"""Login throttling (django-axes): by account, by address, and API tokens by address."""

import pytest
from django.urls import reverse

from apps.accounts.services import create_api_token

PASSWORD = "correct horse battery"


@pytest.fixture
def limit(settings):
    settings.AXES_FAILURE_LIMIT = 3
    return 3


def _login(client, username, password, address="10.0.0.1"):
    return client.post(
        reverse("accounts:login"),
        {"username": username, "password": password},
        REMOTE_ADDR=address,
    )


@pytest.mark.django_db
def test_wrong_passwords_lock_the_account_even_for_the_right_password(client, make_user, limit):
    make_user("admin", password=PASSWORD)
    for _ in range(limit - 1):
        assert _login(client, "admin", "wrong").status_code == 200
    locked = _login(client, "admin", "wrong")
    assert locked.status_code == 429
    assert "Too many failed attempts; try again in 15 minutes." in locked.content.decode()
    assert int(locked["Retry-After"]) > 0
    right = _login(client, "admin", PASSWORD, address="10.0.0.2")  # another address: the account
    assert right.status_code == 429
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_an_address_guessing_many_accounts_is_locked(client, make_user, limit):
    make_user("bob", password=PASSWORD)
    for n in range(limit):
        _login(client, f"guess{n}", "wrong", address="10.0.0.9")
    assert _login(client, "bob", PASSWORD, address="10.0.0.9").status_code == 429
    assert _login(client, "bob", PASSWORD, address="10.0.0.10").status_code == 302


@pytest.mark.django_db
def test_a_few_typos_do_not_lock_anyone_out(client, make_user, limit):
    make_user("carol", password=PASSWORD)
    for _ in range(limit - 1):
        _login(client, "carol", "typo")
    assert _login(client, "carol", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_the_lockout_ends_after_the_cool_off(client, make_user, limit, settings):
    import datetime

    from axes.models import AccessAttempt

    make_user("dave", password=PASSWORD)
    for _ in range(limit):
        _login(client, "dave", "wrong")
    assert _login(client, "dave", PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
    assert _login(client, "dave", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_wrong_api_tokens_lock_the_address_for_every_token(client, make_user, limit):
    user = make_user("erin")
    _, secret = create_api_token(user=user, name="script")
    url = "/api/v1/projects/"
    good = {"HTTP_AUTHORIZATION": f"Bearer {secret}", "REMOTE_ADDR": "10.1.0.1"}
    bad = {"HTTP_AUTHORIZATION": "Bearer not-a-token", "REMOTE_ADDR": "10.1.0.1"}
    assert client.get(url, **good).status_code == 200
    for _ in range(limit - 1):
        assert client.get(url, **bad).status_code == 401
    locked = client.get(url, **bad)
    assert locked.status_code == 429
    assert locked.json()["error"]["message"].startswith("Too many failed attempts; try again in")
    refused = client.get(url, **good)
    assert refused.status_code == 429 and "Retry-After" in refused
    assert "try again in 15 minutes" in refused.json()["error"]["message"]
    other_address = {**good, "REMOTE_ADDR": "10.1.0.2"}
    assert client.get(url, **other_address).status_code == 200


@pytest.mark.django_db
def test_authenticate_without_a_request_is_not_throttled(make_user, limit):
    from django.contrib.auth import authenticate

    make_user("frank", password=PASSWORD)
    assert authenticate(username="frank", password=PASSWORD) is not None


@pytest.mark.django_db
def test_client_address_behind_a_proxy_is_the_last_forwarded_one(rf, settings):
    from apps.accounts.throttle import client_ip

    request = rf.get("/", HTTP_X_FORWARDED_FOR="1.2.3.4, 5.6.7.8", REMOTE_ADDR="127.0.0.1")
    assert client_ip(request) == "127.0.0.1"
    settings.FRUGAL_CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    assert client_ip(request) == "5.6.7.8"
