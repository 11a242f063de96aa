"""Fixtures for the training tests: a small real project (a subset of wrench-youtube)."""

import json

import pytest

from apps.datasets.models import Example


def load_youtube_subset(project, data_dir, *, pool: int, dev: int, test: int) -> None:
    """The first ``pool``/``dev``/``test`` examples of wrench-youtube's train/valid/test, with
    their rule votes (as an import would store them)."""
    folder = data_dir / "wrench-youtube"
    rows = []
    for split, file, n in (("pool", "train", pool), ("dev", "valid", dev), ("test", "test", test)):
        records = json.loads((folder / f"{file}.json").read_text(encoding="utf-8"))
        for key, record in list(records.items())[:n]:
            rows.append(
                Example(
                    project=project,
                    external_id=f"{file}-{key}",
                    split=split,
                    text=record["data"]["text"],
                    gold_label=None if split == "pool" else int(record["label"]),
                    votes={"external": record["weak_labels"]},
                )
            )
    Example.objects.bulk_create(rows)


@pytest.fixture
def youtube_project(project, data_dir):
    """The shared ``project`` (labels HAM, SPAM) with 240 pool, 60 dev, 60 test examples, using
    the n-gram proposer (no language model: fast)."""
    load_youtube_subset(project, data_dir, pool=240, dev=60, test=60)
    project.settings = {"prboost": {"proposer": "ngram", "candidates_per_round": 8}}
    project.save(update_fields=["settings"])
    return project


@pytest.fixture(autouse=True)
def artifact_dir(settings, tmp_path, monkeypatch):
    """Loop states go to a fresh artifacts folder per test (and for workers it starts)."""
    folder = tmp_path / "artifacts"
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(folder)},
        },
    }
    monkeypatch.setenv("FRUGAL_ARTIFACT_ROOT", str(folder))
    return folder


@pytest.fixture
def wait_for_status():
    """``wait_for_status(job, *statuses, timeout=...)``: poll the job row until it has one."""
    import time

    def wait(job, *statuses, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.status in statuses:
                return job
            time.sleep(0.2)
        pytest.fail(f"job {job.pk} not {'/'.join(statuses)} after {timeout} s: {job.status}")

    return wait
