"""Shared fixtures: users in roles, a project, and the shared data folder."""

from pathlib import Path

import pytest
from django.conf import settings


@pytest.fixture
def data_dir() -> Path:
    """The shared corpora folder; tests that need it skip with a reason when it is absent."""
    path = Path(settings.FRUGAL_DATA_DIR)
    if not (path / "wrench-youtube").is_dir():
        pytest.skip(f"shared data folder not found at {path} (set FRUGAL_DATA_DIR)")
    return path


@pytest.fixture
def make_user(db, django_user_model):
    def make(username: str, password: str = "pw-for-tests-123", **extra):
        return django_user_model.objects.create_user(username=username, password=password, **extra)

    return make


@pytest.fixture
def project(db, make_user):
    from apps.projects.models import Membership, Project, Role

    owner = make_user("owner")
    project = Project.objects.create(
        name="Spam", task_type="text_classification", labels=["HAM", "SPAM"], created_by=owner
    )
    Membership.objects.create(project=project, user=owner, role=Role.ADMIN)
    return project


@pytest.fixture
def admin_user(project):
    return project.memberships.get(role="admin").user


@pytest.fixture
def annotator(project, make_user):
    from apps.projects.models import Membership, Role

    user = make_user("annie")
    Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
    return user


@pytest.fixture
def outsider(db, make_user):
    """A logged-in user who is a member of no project."""
    return make_user("mallory")
