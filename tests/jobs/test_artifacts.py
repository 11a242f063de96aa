"""Artifacts go through the shared ``artifacts`` storage and come back byte for byte."""

import io

import pytest
from django.core.exceptions import ValidationError

from apps.jobs.artifacts import delete_artifact, open_artifact, save_artifact
from apps.jobs.models import Artifact

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def artifact_dir(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    return tmp_path


def test_bytes_round_trip_through_the_artifact_storage(project, make_job, artifact_dir):
    job = make_job()
    artifact = save_artifact(
        project=project,
        job=job,
        kind="weak_learner",
        name="round 3/head.pt",
        fileobj_or_bytes=b"\x00weights\xff",
        metadata={"round": 3},
    )
    assert artifact.size_bytes == 9
    assert artifact.metadata == {"round": 3}
    assert artifact.path.startswith(f"projects/{project.pk}/weak_learner/")
    assert "/" not in artifact.path.rsplit("/", 1)[1]  # the name cannot add folders
    assert (artifact_dir / artifact.path).is_file()
    with open_artifact(artifact) as handle:
        assert handle.read() == b"\x00weights\xff"


def test_file_objects_are_stored_in_chunks(project, artifact_dir):
    payload = bytes(range(256)) * 40_000  # ~10 MB
    artifact = save_artifact(
        project=project, kind="lm_cache", name="cache.bin", fileobj_or_bytes=io.BytesIO(payload)
    )
    assert artifact.size_bytes == len(payload)
    with open_artifact(artifact) as handle:
        assert handle.read() == payload


def test_same_name_twice_gives_two_files(project):
    first = save_artifact(project=project, kind="k", name="a.bin", fileobj_or_bytes=b"1")
    second = save_artifact(project=project, kind="k", name="a.bin", fileobj_or_bytes=b"2")
    assert first.path != second.path
    with open_artifact(first) as handle:
        assert handle.read() == b"1"


def test_bad_content_is_rejected_and_nothing_is_stored(project, artifact_dir):
    with pytest.raises(ValidationError):
        save_artifact(project=project, kind="k", name="x", fileobj_or_bytes="text, not bytes")
    with pytest.raises(ValidationError):
        save_artifact(project=project, kind="", name="x", fileobj_or_bytes=b"1")
    assert not Artifact.objects.exists()
    assert not any(p.is_file() for p in artifact_dir.rglob("*"))


def test_delete_removes_file_and_row(project, artifact_dir):
    artifact = save_artifact(project=project, kind="k", name="a.bin", fileobj_or_bytes=b"1")
    path = artifact_dir / artifact.path
    delete_artifact(artifact)
    assert not path.exists()
    assert not Artifact.objects.exists()
