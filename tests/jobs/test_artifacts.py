"""Artifacts go through the shared ``artifacts`` storage and come back byte for byte; the model
cache is found in that storage, by every host."""

import io
from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import ValidationError

from apps.jobs.artifacts import (
    MODEL_CACHE_PREFIX,
    StorageCacheStore,
    artifact_storage,
    delete_artifact,
    model_cache,
    open_artifact,
    save_artifact,
)
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


# --------------------------------------------------------------------------- the model cache
IN_MEMORY = {"BACKEND": "django.core.files.storage.InMemoryStorage"}


def test_model_cache_is_the_configured_folder_when_artifacts_are_in_a_folder(settings, tmp_path):
    from models.cache import ArrayCache

    settings.FRUGAL_MODEL_CACHE_DIR = tmp_path / "model-cache"
    where = model_cache()
    assert where == tmp_path / "model-cache"
    ArrayCache(where, "embeddings").put("ab" * 20, np.ones(3))
    assert (tmp_path / "model-cache" / "embeddings" / "ab" / f"{'ab' * 20}.npy").is_file()


def test_the_default_model_cache_folder_is_beside_the_artifacts():
    from django.conf import settings as live

    assert Path(live.FRUGAL_MODEL_CACHE_DIR).parent == Path(live.FRUGAL_ARTIFACT_ROOT)


def test_model_cache_is_in_object_storage_and_a_second_host_reads_it(settings, monkeypatch):
    """Artifacts without local paths (S3): DORM's features written by one worker are read by
    another without running the encoder."""
    import models.lm as lm_mod
    from models.dorm.features import encode_texts

    settings.STORAGES = {**settings.STORAGES, "artifacts": IN_MEMORY}
    gpu_host = model_cache()
    assert isinstance(gpu_host, StorageCacheStore)
    texts = ["Human: hello?\n\nAssistant: hi", "Human: and you?\n\nAssistant: fine"]
    first = encode_texts(texts, max_length=16, cache_dir=gpu_host, device="cpu", with_hidden=False)
    storage = artifact_storage()
    folders, _ = storage.listdir(f"{MODEL_CACHE_PREFIX}/dorm-activations")
    assert len(folders) == 1  # one chunk, stored under the shared prefix

    def boom(*args, **kwargs):
        raise AssertionError("the encoder ran although the shared cache holds the features")

    monkeypatch.setattr(lm_mod, "load_encoder", boom)
    cpu_host = model_cache()
    second = encode_texts(texts, max_length=16, cache_dir=cpu_host, device="cpu", with_hidden=False)
    assert np.array_equal(first.pooled, second.pooled)


def test_a_cache_entry_stored_twice_stays_one_file(settings):
    settings.STORAGES = {**settings.STORAGES, "artifacts": IN_MEMORY}
    store = model_cache()
    store.save("x/ab/key.npy", io.BytesIO(b"first"))
    store.save("x/ab/key.npy", io.BytesIO(b"first"))  # a second writer of the same entry
    _, files = artifact_storage().listdir(f"{MODEL_CACHE_PREFIX}/x/ab")
    assert files == ["key.npy"]
    assert store.exists("x/ab/key.npy") and not store.exists("x/ab/other.npy")
    with store.open("x/ab/key.npy") as handle:
        assert handle.read() == b"first"
    with pytest.raises(FileNotFoundError):
        store.open("x/ab/other.npy")
