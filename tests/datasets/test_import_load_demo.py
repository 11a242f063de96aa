"""``manage.py load_demo``: accounts, the demo project and its data; safe to run twice."""

import io

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from apps.datasets.models import Example
from apps.projects.models import Membership, Project


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path, monkeypatch):
    settings.VAR_DIR = tmp_path
    monkeypatch.delenv("FRUGAL_DEMO_PASSWORD", raising=False)
    return tmp_path


def load_demo(*args) -> str:
    out = io.StringIO()
    call_command("load_demo", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.needs_data
def test_load_demo_creates_accounts_project_and_data_once(db, data_dir, var_dir):
    first = load_demo()
    second = load_demo()
    project = Project.objects.get(name="YouTube spam (demo)")
    assert Project.objects.filter(name="YouTube spam (demo)").count() == 1
    assert project.labels == ["HAM", "SPAM"]
    counts = {
        s: Example.objects.filter(project=project, split=s).count() for s in ("pool", "dev", "test")
    }
    assert counts == {"pool": 1586, "dev": 120, "test": 250}
    assert Example.objects.filter(project=project, votes__isnull=False).count() == 1956
    assert "Imported the demo data" in first and "already loaded (1,956 examples)" in second

    admin = get_user_model().objects.get(username="admin")
    assert admin.is_staff and not admin.is_superuser
    roles = dict(Membership.objects.filter(project=project).values_list("user__username", "role"))
    assert roles == {"admin": "admin", "annotator": "annotator"}

    stored = dict(
        line.split(": ", 1)
        for line in (var_dir / "demo_credentials.txt").read_text().splitlines()
        if not line.startswith("#")
    )
    assert authenticate(username="admin", password=stored["admin"]) is not None
    assert authenticate(username="annotator", password=stored["annotator"]) is not None
    assert stored["admin"] in first and stored["admin"] in second  # the same on every run
    assert "/accounts/login/" in first


def test_load_demo_without_data_still_creates_the_accounts(db, tmp_path):
    out = load_demo("--data-dir", str(tmp_path / "missing"))
    assert "Demo data not found" in out
    assert get_user_model().objects.filter(username__in=["admin", "annotator"]).count() == 2
    assert Project.objects.get(name="YouTube spam (demo)").examples.count() == 0


def test_load_demo_uses_the_password_from_the_environment(db, tmp_path, monkeypatch, var_dir):
    monkeypatch.setenv("FRUGAL_DEMO_PASSWORD", "demo-pass-4321")
    load_demo("--data-dir", str(tmp_path / "missing"))
    assert authenticate(username="annotator", password="demo-pass-4321") is not None
    assert not (var_dir / "demo_credentials.txt").exists()
